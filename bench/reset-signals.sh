# Sourced first by the bench/ scripts (`source "$(dirname "$0")/reset-signals.sh"`, before anything
# else runs): a caller may hand down a signal mask. A thread of a multithreaded program (a test
# runner, a Swift program starting a script through Foundation's Process from a dispatch thread)
# blocks most signals, and fork and exec keep the mask. With SIGTERM blocked, neither the script nor
# what it starts could be stopped (a proxy or an iperf3 server would outlive it), and `openssl speed`,
# which times itself with SIGALRM, would never end. So the script starts again through perl (always
# there: Debian's perl-base is essential) with an empty mask and the default disposition for the
# signals that matter, with the same arguments.
SIGNALS_BLOCKED=$(sed -n 's/^SigBlk:[[:space:]]*//p' "/proc/$$/status")
if [ -n "$SIGNALS_BLOCKED" ] && [ "$((16#$SIGNALS_BLOCKED))" != 0 ] && [ -z "${BENCH_RUN_SIGNALS_RESET:-}" ]; then
  export BENCH_RUN_SIGNALS_RESET=1
  exec perl -MPOSIX -e '$SIG{$_} = "DEFAULT" for qw(HUP INT TERM ALRM PIPE CHLD);
    sigprocmask(SIG_SETMASK, POSIX::SigSet->new) or die "sigprocmask: $!\n";
    exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n"' "$BASH" "$0" "$@"
fi
unset SIGNALS_BLOCKED
