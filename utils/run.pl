#!/usr/bin/env perl
# Run a command, or an array of N jobs, on this machine in parallel (Kaldi's run.pl interface).
#
#   run.pl [options] JOB=1:N log/x.JOB.log command args-with-JOB ...
#   run.pl [options] log/x.log command args ...
#
# Every occurrence of the job variable (JOB above; any name works, e.g. SPLIT=1:4) in the log
# name and in the command is replaced by the job index. Each job runs under "bash -c" with
# pipefail, its stdout and stderr go to its own log, which starts with the command line and
# start time and ends with the exit status, end time and elapsed time. run.pl waits for every
# job; if any fails it prints "run.pl: K / N failed", then the tail of each failing log, and
# exits 1.
#
# Options:
#   --max-jobs-run M   run at most M jobs at a time (default: all at once)
#   --tail-lines L     lines of each failing log to print (default 20)
#   --num-threads T, --mem X, --gpu G   accepted for cluster-script compatibility, ignored
#                      (a --gpu value other than 0 is an error: run.pl has no GPU scheduling)
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(strftime :sys_wait_h);
use Time::HiRes qw(time);

my $me = "run.pl";
my $max_jobs = 0;
my $tail_lines = 20;

sub usage_exit {
  print STDERR "Usage: $me [--max-jobs-run M] [JOB=1:N] <log-file> <command> [args...]\n";
  print STDERR "$me: $_[0]\n" if @_;
  exit 1;
}

while (@ARGV && $ARGV[0] =~ m/^--/) {
  my $opt = shift @ARGV;
  last if $opt eq "--";
  my $val;
  if ($opt =~ m/^(--[^=]+)=(.*)$/s) {
    ($opt, $val) = ($1, $2);
  } else {
    usage_exit("option $opt needs a value") unless @ARGV;
    $val = shift @ARGV;
  }
  if ($opt eq "--max-jobs-run") {
    usage_exit("--max-jobs-run needs a positive integer, got '$val'") unless $val =~ m/^[1-9]\d*$/;
    $max_jobs = $val;
  } elsif ($opt eq "--tail-lines") {
    usage_exit("--tail-lines needs a non-negative integer, got '$val'") unless $val =~ m/^\d+$/;
    $tail_lines = $val;
  } elsif ($opt eq "--gpu") {
    usage_exit("--gpu $val: run.pl cannot schedule GPUs; run the command directly") if $val ne "0";
  } elsif ($opt eq "--num-threads" || $opt eq "--mem") {
    # accepted and ignored, like Kaldi's run.pl
  } else {
    usage_exit("unknown option $opt");
  }
}

my ($jobvar, $first, $last) = (undef, 1, 1);
if (@ARGV && $ARGV[0] =~ m/^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
  ($jobvar, $first, $last) = ($1, $2, $3);
  shift @ARGV;
  usage_exit("empty job range $jobvar=$first:$last") if $first > $last;
} elsif (@ARGV && $ARGV[0] =~ m/^([A-Za-z_]\w*)=(\d+)$/) {
  ($jobvar, $first, $last) = ($1, $2, $2);
  shift @ARGV;
}
usage_exit("need a log file and a command") if @ARGV < 2;
my $logpat = shift @ARGV;
my $njobs = $last - $first + 1;
if (defined $jobvar && $njobs > 1 && index($logpat, $jobvar) < 0) {
  usage_exit("$njobs jobs would share the log file $logpat; put $jobvar in its name");
}

# Rebuild the command line: arguments without whitespace or quotes pass through as shell
# words (so "|" or ">" act as in Kaldi), anything else is single-quoted as one word.
my @words;
for my $arg (@ARGV) {
  if ($arg ne "" && $arg =~ m/^[^\s'"]+$/) {
    push @words, $arg;
  } else {
    (my $q = $arg) =~ s/'/'\\''/g;
    push @words, "'$q'";
  }
}
my $cmd = join(" ", @words);

sub subst {
  my ($s, $id) = @_;
  $s =~ s/\Q$jobvar\E/$id/g if defined $jobvar;
  return $s;
}

sub now { return strftime("%a %b %e %H:%M:%S %Z %Y", localtime()); }

my %running;   # pid -> job id
my %status;    # job id -> exit status (shell convention: 128+signal when killed)
my %started;   # job id -> start time (float)

# On INT/TERM, stop the running jobs (each is its own process group) before leaving.
for my $sig (qw(INT TERM HUP)) {
  $SIG{$sig} = sub {
    kill("TERM", map { -$_ } keys %running);
    print STDERR "$me: caught SIG$sig, killed " . scalar(keys %running) . " running job(s)\n";
    exit 1;
  };
}

sub start_job {
  my ($id) = @_;
  my $log = subst($logpat, $id);
  my $jcmd = subst($cmd, $id);
  my $dir = dirname($log);
  make_path($dir) unless -d $dir;
  open(my $fh, ">", $log) or die "$me: cannot write log file $log: $!\n";
  print $fh "# $jcmd\n# Started at " . now() . "\n#\n";
  close($fh);
  $started{$id} = time();
  my $pid = fork();
  die "$me: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    setpgrp(0, 0);
    open(STDOUT, ">>", $log) or die "$me: cannot append to $log: $!\n";
    open(STDERR, ">&", \*STDOUT) or die "$me: cannot redirect stderr: $!\n";
    open(STDIN, "<", "/dev/null");
    exec("bash", "-c", "set -o pipefail\n$jcmd") or die "$me: cannot run bash: $!\n";
  }
  $running{$pid} = $id;
}

sub reap_one {
  my $pid = waitpid(-1, 0);
  return if $pid <= 0 || !exists $running{$pid};
  my $raw = $?;
  my $id = delete $running{$pid};
  my $code = WIFSIGNALED($raw) ? 128 + WTERMSIG($raw) : WEXITSTATUS($raw);
  $status{$id} = $code;
  my $elapsed = int(time() - $started{$id} + 0.5);
  my $log = subst($logpat, $id);
  if (open(my $fh, ">>", $log)) {
    my $how = WIFSIGNALED($raw) ? "killed by signal " . WTERMSIG($raw) . ", code $code" : "code $code";
    print $fh "# Accounting: time=$elapsed threads=1\n";
    print $fh "# Ended ($how) at " . now() . ", elapsed time $elapsed seconds\n";
    close($fh);
  }
}

for my $id ($first .. $last) {
  reap_one() while $max_jobs > 0 && keys(%running) >= $max_jobs;
  start_job($id);
}
reap_one() while keys %running;

my @failed = grep { $status{$_} != 0 } ($first .. $last);
if (@failed) {
  my $nf = scalar @failed;
  if ($njobs == 1) {
    print STDERR "$me: job failed with status $status{$failed[0]}, log is in " . subst($logpat, $failed[0]) . "\n";
  } else {
    print STDERR "$me: $nf / $njobs failed, log is in " . subst($logpat, $failed[0])
      . ($nf > 1 ? " (and " . ($nf - 1) . " more)" : "") . "\n";
  }
  for my $id (@failed) {
    my $log = subst($logpat, $id);
    print STDERR "$me: ---- last $tail_lines lines of $log (exit status $status{$id}) ----\n";
    if (open(my $fh, "<", $log)) {
      my @lines = <$fh>;
      close($fh);
      my $from = @lines > $tail_lines ? @lines - $tail_lines : 0;
      print STDERR @lines[$from .. $#lines] if @lines;
    } else {
      print STDERR "(cannot read $log: $!)\n";
    }
  }
  exit 1;
}
exit 0;
