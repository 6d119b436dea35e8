#ifndef SCISTREAM_SPAWN_H
#define SCISTREAM_SPAWN_H
#include <sys/types.h>
/* Process spawning shims land with the data plane. */
#endif
