#ifndef SCISTREAM_SPAWN_H
#define SCISTREAM_SPAWN_H
#include <sys/types.h>

/* Process spawning for supervised children (the data plane's proxies).
 *
 * scistream_spawn starts `path` (clone with CLONE_VM | CLONE_VFORK, as posix_spawn does, then execve) with `argv` and `envp` (both NULL-terminated). The child
 * runs in its own session and process group (setsid), with default signal dispositions and an
 * empty signal mask, the file-creation mask `file_mask` (umask), stdin from /dev/null, stdout and
 * stderr to `output_fd` when it is >= 0 (such as a pipe's write end; the caller keeps and closes
 * it), else appended to `log_path` (created 0600 if missing; O_NOFOLLOW), a soft RLIMIT_NOFILE of
 * `open_files` when it is > 0 (at most the hard limit), and every other descriptor closed on exec.
 * With `listen_fd_count` > 0, the descriptors `listen_fds` are handed over by socket activation
 * (sd_listen_fds(3)): they become 3, 4, ... in that order, stay open across the exec, and the
 * environment gets LISTEN_FDS=<count> and LISTEN_PID=<the child's pid>.
 *
 * Returns 0 on success and sets *pid, *pidfd (close-on-exec; -1 if pidfd_open failed) and
 * *error_pipe: the read end (non-blocking, close-on-exec) of a close-on-exec pipe. Reading it
 * yields end-of-file once the exec succeeded, or 4 bytes holding the child's errno if the setup or
 * the exec failed (the child then exits with status 127 and must still be reaped by the caller).
 * Returns an errno value if nothing was started (the log file could not be opened, clone failed...).
 */
int scistream_spawn(const char *path, char *const argv[], char *const envp[], const char *log_path,
                    int output_fd, long open_files, mode_t file_mask, const int *listen_fds, int listen_fd_count,
                    pid_t *pid, int *pidfd, int *error_pipe);

/* pipe2(2) with both ends close-on-exec and the read end (fds[0]) non-blocking: a child's output
 * pipe. Returns 0, or an errno value. */
int scistream_output_pipe(int fds[2]);

/* pidfd_open(2) through syscall(2): a close-on-exec descriptor that polls readable when `pid` exits. */
int scistream_pidfd_open(pid_t pid);

/* pidfd_send_signal(2) through syscall(2). */
int scistream_pidfd_send_signal(int pidfd, int sig);

/* prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process. */
int scistream_set_child_subreaper(void);

/* Reaps one exited child of this process that is in process group `group` (waitid(P_PGID,
 * WEXITED | WNOHANG)): 1 if one was reaped, 0 if children in that group remain but none has exited
 * yet, -1 if none remain (ECHILD) or on another error. */
int scistream_reap_group_member(pid_t group);

/* The wait(2) status macros, which Swift cannot see. */
int scistream_wifexited(int status);
int scistream_wexitstatus(int status);
int scistream_wifsignaled(int status);
int scistream_wtermsig(int status);
#endif
