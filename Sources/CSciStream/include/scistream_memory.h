#ifndef SCISTREAM_MEMORY_H
#define SCISTREAM_MEMORY_H
/* glibc's malloc_trim: gives freed heap memory back to the system. */
int scistream_malloc_trim(void);
#endif
