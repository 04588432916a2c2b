/* A runtime wrapper for bench/docker-phases.sh: runs TARGET with the same
 * arguments (fork, exec, wait: the runtime's stdio, fds and environment are
 * its own), then appends "TAG <TAB> subcommand <TAB> start ms <TAB> duration
 * ms" (CLOCK_MONOTONIC) to LOG. Compiled once per runtime with -DTARGET,
 * -DTAG and -DLOG, and -DCONFIG for boundary-runc's config file (Docker
 * passes a runtime no option for it); a C program so the wrapper's own
 * start costs little and the same for every runtime measured. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
#ifdef CONFIG
        setenv("BOUNDARY_RUNC_CONFIG", CONFIG, 1);
#endif
        argv[0] = TARGET;
        execv(TARGET, argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return 1;
    double t1 = now_ms();
    const char *sub = "?";
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        /* The value of a global option that takes one. */
        if (i > 1 && (!strcmp(argv[i - 1], "--root") || !strcmp(argv[i - 1], "--log") || !strcmp(argv[i - 1], "--log-format")))
            continue;
        sub = argv[i];
        break;
    }
    int fd = open(LOG, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dprintf(fd, "%s\t%s\t%.3f\t%.3f\n", TAG, sub, t0, t1 - t0);
        close(fd);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
