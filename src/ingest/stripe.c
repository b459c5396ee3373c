/* placeholder: written by the ingest work */
#include "ingest/ingest.h"
