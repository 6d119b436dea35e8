#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
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

int scistream_wifexited(int status) { return WIFEXITED(status); }
int scistream_wexitstatus(int status) { return WEXITSTATUS(status); }
int scistream_wifsignaled(int status) { return WIFSIGNALED(status); }
int scistream_wtermsig(int status) { return WTERMSIG(status); }

/* In the child, between fork and exec: only async-signal-safe calls from here on. */
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

    /* Block every signal while forking, so that no handler of ours runs in the child before the
     * child has reset the dispositions. The mask is per thread: restore it in the parent. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    pid_t child = fork();
    if (child == 0) {
        close(pipe_fds[0]);
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
            report_and_exit(pipe_fds[1]);
        }
        (void)umask(file_mask);
        if (setsid() < 0) {
            report_and_exit(pipe_fds[1]);
        }
        if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0) {
            report_and_exit(pipe_fds[1]);
        }
        /* Socket activation (sd_listen_fds(3)): the listening sockets become 3, 4, ... in order, open
         * across the exec, announced by LISTEN_FDS and LISTEN_PID (this child's pid). Each is first
         * moved above that range, so that no dup2 overwrites a descriptor still needed; before the
         * RLIMIT_NOFILE below, which may be lower than the descriptors the parent holds. */
        int error_fd = pipe_fds[1];
        int first_free = STDERR_FILENO + 1 + (listen_fd_count > 0 ? listen_fd_count : 0);
        if (listen_fd_count > 0) {
            error_fd = fcntl(pipe_fds[1], F_DUPFD_CLOEXEC, first_free);
            if (error_fd < 0) {
                report_and_exit(pipe_fds[1]);
            }
            int moved[listen_fd_count];
            for (int index = 0; index < listen_fd_count; index++) {
                moved[index] = fcntl(listen_fds[index], F_DUPFD_CLOEXEC, first_free);
                if (moved[index] < 0) {
                    report_and_exit(error_fd);
                }
            }
            for (int index = 0; index < listen_fd_count; index++) {
                /* dup2 leaves the new descriptor without FD_CLOEXEC: it survives the exec. */
                if (dup2(moved[index], STDERR_FILENO + 1 + index) < 0) {
                    report_and_exit(error_fd);
                }
            }
        }
        if (open_files > 0) {
            struct rlimit files;
            if (getrlimit(RLIMIT_NOFILE, &files) != 0) {
                report_and_exit(error_fd);
            }
            files.rlim_cur = (rlim_t)open_files;
            if (files.rlim_max != RLIM_INFINITY && files.rlim_cur > files.rlim_max) {
                files.rlim_cur = files.rlim_max;
            }
            if (setrlimit(RLIMIT_NOFILE, &files) != 0) {
                report_and_exit(error_fd);
            }
        }
        /* Everything else above 2 (null_fd, log_fd, the error pipe's write end) closes on exec. */
        mark_cloexec_from(first_free);
        if (listen_fd_count <= 0) {
            execve(path, argv, envp);
            report_and_exit(error_fd);
        }
        int variables = 0;
        while (envp[variables] != NULL) {
            variables++;
        }
        char *environment[variables + 3];
        int kept = 0;
        for (int index = 0; index < variables; index++) {
            if (!has_prefix(envp[index], "LISTEN_PID=") && !has_prefix(envp[index], "LISTEN_FDS=")) {
                environment[kept++] = envp[index];
            }
        }
        char pid_variable[48], fds_variable[48];
        environment[kept++] = format_variable(pid_variable, "LISTEN_PID=", (long)getpid());
        environment[kept++] = format_variable(fds_variable, "LISTEN_FDS=", (long)listen_fd_count);
        environment[kept] = NULL;
        execve(path, argv, environment);
        report_and_exit(error_fd);
    }

    int fork_error = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(null_fd);
    close(log_fd);
    close(pipe_fds[1]);
    if (child < 0) {
        close(pipe_fds[0]);
        return fork_error;
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
