#include <malloc.h>
#include "scistream_memory.h"

int scistream_malloc_trim(void) {
    return malloc_trim(0);
}
