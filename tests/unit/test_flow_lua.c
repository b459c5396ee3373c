/* Unit tests: placeholder until the module lands. */
#include <criterion/criterion.h>
