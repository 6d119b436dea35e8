#ifndef CSCISTREAM_H
#define CSCISTREAM_H
#include "scistream_net.h"
#include "scistream_spawn.h"
#include "scistream_memory.h"
#include "scistream_diag.h"
#endif
