#include <criterion/criterion.h>
#include "effect/mail.h"
Test(mail, placeholder) { cr_assert(1); }
