#include "heap.h"

#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void heap_trim(void)
{
#if defined(__GLIBC__)
	malloc_trim(0);
#endif
}
