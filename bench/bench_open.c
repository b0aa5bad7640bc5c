/*
 * bench_open.c - issue 10, target 3: what apicred_open + the first
 * apicred_get cost an application, in time and memory, with a confdir of
 * 1000 services (apikey and oauth2 in turn, and a file store, the default
 * kind; made by bench/bench-env.sh), next to the same with 1 service.
 *
 * Each measurement runs in a new process, as an application or a CLI run
 * would start: this program executed again (not a fork of this one, which
 * has set up libcurl and OpenSSL for the sandbox and would hide what that
 * costs). It reports the wall time of open + get of svc0 (an apikey service:
 * no network) and the CPU time it took, the heap it keeps (mallinfo2: bytes
 * in use, arena and mmapped) and the resident set it added
 * (/proc/self/statm). Median of runs; the per-service cost is the
 * difference over the 999 extra services. Figures, not assertions.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apicred/apicred.h>

#include "bench_util.h"

#define S_MANY 1000

struct s_cost { double us, cpu_us, heap_kb, rss_kb; };

/* User + system CPU time of the process: wall time counts the waits for a
 * CPU that a loaded machine adds. */
static double s_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double s_rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2)
		BENCH_DIE("cannot read /proc/self/statm");
	fclose(f);
	return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1024;
}

static double s_heap_kb(void)
{
	struct mallinfo2 m = mallinfo2();

	return (double)(m.uordblks + m.hblkhd) / 1024;
}

/* The new process (bench_open --child CONFDIR FD): open confdir, get svc0,
 * write what it cost to FD. */
static int s_child(const char *confdir, int fd)
{
	struct s_cost c;
	apicred_ctx *ctx;
	apicred_cred *cred;
	double heap0, rss0, cpu0;
	int64_t t0;

	bench_prog = "bench_open (child)";
	bench_moduledir = getenv("APICRED_TEST_MODULEDIR");
	heap0 = s_heap_kb();
	rss0 = s_rss_kb();
	cpu0 = s_cpu_us();
	t0 = bench_ns();
	ctx = bench_open(confdir, 0);
	if (apicred_cred_new(&cred) != APICRED_OK ||
	    apicred_get(ctx, "svc0", NULL, cred) != APICRED_OK)
		BENCH_DIE("apicred_get svc0: %s", apicred_errmsg());
	c.us = (double)(bench_ns() - t0) / 1e3;
	c.cpu_us = s_cpu_us() - cpu0;
	c.heap_kb = s_heap_kb() - heap0;
	c.rss_kb = s_rss_kb() - rss0;
	if (write(fd, &c, sizeof(c)) != sizeof(c))
		_exit(1);
	_exit(0); /* as a CLI run would, without tearing down */
}

/* Runs the measurement of confdir in a new process. */
static struct s_cost s_measure(const char *confdir)
{
	struct s_cost c;
	int p[2], st;
	pid_t pid;

	if (pipe(p) != 0)
		BENCH_DIE("pipe: %s", strerror(errno));
	fflush(NULL);
	if ((pid = fork()) < 0)
		BENCH_DIE("fork: %s", strerror(errno));
	if (pid == 0) {
		char fd[16];

		close(p[0]);
		snprintf(fd, sizeof(fd), "%d", p[1]);
		execl("/proc/self/exe", "bench_open", "--child", confdir, fd, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (read(p[0], &c, sizeof(c)) != sizeof(c))
		BENCH_DIE("the child measuring %s failed", confdir);
	close(p[0]);
	waitpid(pid, &st, 0);
	return c;
}

int main(int argc, char **argv)
{
	int runs = bench_runs();
	double us[2][15], cpu[2][15], heap[2][15], rss[2][15];
	struct s_cost m[2];
	char now[64];

	if (argc == 4 && strcmp(argv[1], "--child") == 0)
		return s_child(argv[2], atoi(argv[3]));
	bench_init("bench_open");
	bench_env_start("bench-env.sh", "many 1000");
	for (int r = 0; r < runs; r++)
		for (int k = 0; k < 2; k++) { /* interleaved */
			struct s_cost c = s_measure(bench_env(k ? "MANY" : "ONE"));
			us[k][r] = c.us;
			cpu[k][r] = c.cpu_us;
			heap[k][r] = c.heap_kb;
			rss[k][r] = c.rss_kb;
		}
	for (int k = 0; k < 2; k++)
		m[k] = (struct s_cost){ bench_median(us[k], (size_t)runs),
		                        bench_median(cpu[k], (size_t)runs),
		                        bench_median(heap[k], (size_t)runs),
		                        bench_median(rss[k], (size_t)runs) };
	printf("apicred_open + first apicred_get (svc0, apikey) in a new process, median of %d\n",
	       runs);
	for (int k = 0; k < 2; k++)
		printf("   %5d services: %9.1f us (CPU %9.1f us)   heap +%8.1f KB   RSS +%8.1f KB\n",
		       k ? S_MANY : 1, m[k].us, m[k].cpu_us, m[k].heap_kb, m[k].rss_kb);
	printf("   per extra service: %.2f us (CPU %.2f us), heap %.2f KB, RSS %.2f KB\n",
	       (m[1].us - m[0].us) / (S_MANY - 1), (m[1].cpu_us - m[0].cpu_us) / (S_MANY - 1),
	       (m[1].heap_kb - m[0].heap_kb) / (S_MANY - 1),
	       (m[1].rss_kb - m[0].rss_kb) / (S_MANY - 1));
	printf("   target: <= 2 ms and < 1 MB with %d services\n", S_MANY);
	snprintf(now, sizeof(now), "%.2f ms (CPU %.2f ms), heap +%.0f KB (RSS +%.0f KB)",
	         m[1].us / 1e3, m[1].cpu_us / 1e3, m[1].heap_kb, m[1].rss_kb);
	bench_row("`apicred_open` + first get, 1000 service files", now,
	          "1 service: %.2f ms (CPU %.2f ms), heap +%.0f KB; so %.1f us (CPU %.1f us) and "
	          "%.2f KB heap per service (target <= 2 ms, < 1 MB)", m[0].us / 1e3,
	          m[0].cpu_us / 1e3, m[0].heap_kb, (m[1].us - m[0].us) / (S_MANY - 1),
	          (m[1].cpu_us - m[0].cpu_us) / (S_MANY - 1),
	          (m[1].heap_kb - m[0].heap_kb) / (S_MANY - 1));
	bench_env_stop();
	return 0;
}
