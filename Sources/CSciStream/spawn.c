#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include "scistream_spawn.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

int scistream_output_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return errno;
    }
    int flags = fcntl(fds[0], F_GETFL);
    if (flags < 0 || fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) != 0) {
        int error = errno;
        close(fds[0]);
        close(fds[1]);
        return error;
    }
    return 0;
}

int scistream_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int scistream_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int scistream_set_child_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int scistream_reap_group_member(pid_t group) {
    siginfo_t info;
    for (;;) {
        memset(&info, 0, sizeof(info));
        if (waitid(P_PGID, (id_t)group, &info, WEXITED | WNOHANG) == 0) {
            return info.si_pid != 0 ? 1 : 0;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}

int scistream_wifexited(int status) { return WIFEXITED(status); }
int scistream_wexitstatus(int status) { return WEXITSTATUS(status); }
int scistream_wifsignaled(int status) { return WIFSIGNALED(status); }
int scistream_wtermsig(int status) { return WTERMSIG(status); }

/* In the child, between clone and exec: only async-signal-safe calls from here on. */
static void report_and_exit(int fd) {
    int error = errno;
    ssize_t ignored = write(fd, &error, sizeof(error));
    (void)ignored;
    _exit(127);
}

static void mark_cloexec_from(int first) {
    /* close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11): one syscall for every descriptor. */
    if (syscall(SYS_close_range, (unsigned int)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
        return;
    }
    struct rlimit limit;
    long highest = 65536;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < 1048576) {
        highest = (long)limit.rlim_cur;
    }
    for (long fd = first; fd < highest; fd++) {
        int flags = fcntl((int)fd, F_GETFD);
        if (flags >= 0 && (flags & FD_CLOEXEC) == 0) {
            (void)fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }
}

/* Writes "NAME=<value>" into `buffer` (at least 40 bytes) without the C library's formatting. */
static char *format_variable(char *buffer, const char *name, long value) {
    char digits[24];
    int count = 0;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 && count < (int)sizeof(digits));
    char *cursor = buffer;
    while (*name) {
        *cursor++ = *name++;
    }
    while (count > 0) {
        *cursor++ = digits[--count];
    }
    *cursor = 0;
    return buffer;
}

static int has_prefix(const char *text, const char *prefix) {
    while (*prefix) {
        if (*text++ != *prefix++) {
            return 0;
        }
    }
    return 1;
}

/* What the child needs, in the parent's memory: the child of a CLONE_VM clone shares it (it only
 * reads this, and writes nothing but its own stack). */
struct spawn_request {
    const char *path;
    char *const *argv;
    char *const *envp;
    int null_fd;
    int log_fd;
    int error_pipe_read;
    int error_pipe_write;
    long open_files;
    mode_t file_mask;
    const int *listen_fds;
    int listen_fd_count;
};

/* The child, between clone and exec. It runs on a stack of its own in the parent's address space
 * while the parent's calling thread is suspended (CLONE_VFORK): only async-signal-safe calls, no
 * allocation, and nothing written outside this stack (errno is the suspended thread's). */
static int spawn_child(void *argument) {
    const struct spawn_request *request = argument;
    close(request->error_pipe_read);
    /* Default dispositions for every signal. The raw rt_sigaction syscall, because glibc's
     * sigaction refuses its two reserved real-time signals (32, 33), which an ignoring parent
     * would otherwise pass on ignored across the exec. */
    struct kernel_sigaction_default {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask;
    } default_action = { SIG_DFL, 0, NULL, 0 };
    for (int signo = 1; signo < NSIG; signo++) {
        if (signo == SIGKILL || signo == SIGSTOP) {
            continue;
        }
        (void)syscall(SYS_rt_sigaction, signo, &default_action, NULL, sizeof(default_action.mask));
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) {
        report_and_exit(request->error_pipe_write);
    }
    (void)umask(request->file_mask);
    if (setsid() < 0) {
        report_and_exit(request->error_pipe_write);
    }
    if (dup2(request->null_fd, STDIN_FILENO) < 0 || dup2(request->log_fd, STDOUT_FILENO) < 0 || dup2(request->log_fd, STDERR_FILENO) < 0) {
        report_and_exit(request->error_pipe_write);
    }
    /* Socket activation (sd_listen_fds(3)): the listening sockets become 3, 4, ... in order, open
     * across the exec, announced by LISTEN_FDS and LISTEN_PID (this child's pid). Each is first
     * moved above that range, so that no dup2 overwrites a descriptor still needed; before the
     * RLIMIT_NOFILE below, which may be lower than the descriptors the parent holds. */
    int error_fd = request->error_pipe_write;
    int first_free = STDERR_FILENO + 1 + (request->listen_fd_count > 0 ? request->listen_fd_count : 0);
    if (request->listen_fd_count > 0) {
        error_fd = fcntl(request->error_pipe_write, F_DUPFD_CLOEXEC, first_free);
        if (error_fd < 0) {
            report_and_exit(request->error_pipe_write);
        }
        int moved[request->listen_fd_count];
        for (int index = 0; index < request->listen_fd_count; index++) {
            moved[index] = fcntl(request->listen_fds[index], F_DUPFD_CLOEXEC, first_free);
            if (moved[index] < 0) {
                report_and_exit(error_fd);
            }
        }
        for (int index = 0; index < request->listen_fd_count; index++) {
            /* dup2 leaves the new descriptor without FD_CLOEXEC: it survives the exec. */
            if (dup2(moved[index], STDERR_FILENO + 1 + index) < 0) {
                report_and_exit(error_fd);
            }
        }
    }
    if (request->open_files > 0) {
        struct rlimit files;
        if (getrlimit(RLIMIT_NOFILE, &files) != 0) {
            report_and_exit(error_fd);
        }
        files.rlim_cur = (rlim_t)request->open_files;
        if (files.rlim_max != RLIM_INFINITY && files.rlim_cur > files.rlim_max) {
            files.rlim_cur = files.rlim_max;
        }
        if (setrlimit(RLIMIT_NOFILE, &files) != 0) {
            report_and_exit(error_fd);
        }
    }
    /* Everything else above 2 (/dev/null, the log, the error pipe's write end) closes on exec. */
    mark_cloexec_from(first_free);
    if (request->listen_fd_count <= 0) {
        execve(request->path, request->argv, request->envp);
        report_and_exit(error_fd);
    }
    int variables = 0;
    while (request->envp[variables] != NULL) {
        variables++;
    }
    char *environment[variables + 3];
    int kept = 0;
    for (int index = 0; index < variables; index++) {
        if (!has_prefix(request->envp[index], "LISTEN_PID=") && !has_prefix(request->envp[index], "LISTEN_FDS=")) {
            environment[kept++] = request->envp[index];
        }
    }
    char pid_variable[48], fds_variable[48];
    environment[kept++] = format_variable(pid_variable, "LISTEN_PID=", (long)getpid());
    environment[kept++] = format_variable(fds_variable, "LISTEN_FDS=", (long)request->listen_fd_count);
    environment[kept] = NULL;
    execve(request->path, request->argv, environment);
    report_and_exit(error_fd);
    return 127;
}

int scistream_spawn(const char *path, char *const argv[], char *const envp[], const char *log_path,
                    int output_fd, long open_files, mode_t file_mask, const int *listen_fds, int listen_fd_count,
                    pid_t *pid, int *pidfd, int *error_pipe) {
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        return errno;
    }
    int log_fd = output_fd >= 0 ? fcntl(output_fd, F_DUPFD_CLOEXEC, 3)
                                : open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (log_fd < 0) {
        int error = errno;
        close(null_fd);
        return error;
    }
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        int error = errno;
        close(null_fd);
        close(log_fd);
        return error;
    }

    /* Block every signal while cloning, so that no handler of ours runs in the child before the
     * child has reset the dispositions. The mask is per thread: restore it in the parent. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    struct spawn_request request = {
        .path = path, .argv = argv, .envp = envp, .null_fd = null_fd, .log_fd = log_fd,
        .error_pipe_read = pipe_fds[0], .error_pipe_write = pipe_fds[1], .open_files = open_files,
        .file_mask = file_mask, .listen_fds = listen_fds, .listen_fd_count = listen_fd_count,
    };
    /* clone(CLONE_VM | CLONE_VFORK), as posix_spawn does, rather than fork: fork copies the page
     * tables of the whole s2cs and write-protects every page it holds, which the s2cs then pays for
     * in page faults after every start, more the more sessions it holds. The child borrows the
     * parent's memory until its exec, on a stack of its own. */
    size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    pid_t child = -1;
    int clone_error = 0;
    if (stack == MAP_FAILED) {
        clone_error = errno;
    } else {
        child = clone(spawn_child, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &request);
        clone_error = errno;
        munmap(stack, stack_size);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(null_fd);
    close(log_fd);
    close(pipe_fds[1]);
    if (child < 0) {
        close(pipe_fds[0]);
        return clone_error;
    }
    int flags = fcntl(pipe_fds[0], F_GETFL);
    if (flags >= 0) {
        (void)fcntl(pipe_fds[0], F_SETFL, flags | O_NONBLOCK);
    }
    *pid = child;
    *pidfd = scistream_pidfd_open(child);
    *error_pipe = pipe_fds[0];
    return 0;
}
