#ifndef HOPXD_HEAP_H
#define HOPXD_HEAP_H

/*
 * Gives freed heap memory back to the system where the C library can
 * (glibc's malloc_trim: the arenas' free pages, not only the heap's top);
 * does nothing elsewhere. It walks the heap, so call it after a large
 * release (thousands of connections gone), never per free.
 */
void heap_trim(void);

#endif
