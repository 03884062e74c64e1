/* worker/revoke.c - the worker's revoked task ids, as Celery's
 * worker_state.revoked: a LimitedSet of at most REVOKE_MAX ids, each kept for
 * REVOKE_EXPIRES seconds after it was revoked (Celery's REVOKES_MAX and
 * REVOKE_EXPIRES), and its state file (Celery's --statedb).
 *
 * Times are wall-clock seconds since the epoch, so the state file means the
 * same after a restart or a reboot (Celery keeps monotonic times and carries
 * them over a reboot unchanged, which makes old revokes live too long).
 *
 * Lookups are by an open-addressing hash over an entry array. The hash is
 * rebuilt on purge (expired ids dropped, then the oldest beyond REVOKE_MAX),
 * which happens only when the set overflows or the loop asks for it, so an
 * add or a lookup costs O(1).
 *
 * State file format, version 1 (text, one record a line):
 *
 *   warren-revoked 1
 *   <seconds since the epoch, %.6f> <task id to the end of the line>
 *   ...
 *
 * Written whole to "<path>.tmp", fsync()ed, renamed over <path>, and the
 * directory fsync()ed, so a crash leaves the old file or the new one. A file
 * of another version is ignored with a warning. Bump REVOKE_STATE_VERSION
 * (and keep reading the old version) when a record gains a field or the
 * layout changes. Ids holding a newline are not persisted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker.h"

#define REVOKE_STATE_MAGIC "warren-revoked"
#define REVOKE_STATE_VERSION 1
#define REVOKE_SAVE_INTERVAL 1.0 /* seconds: at most one write a second */

typedef struct revoke_entry {
	char *id;
	double when;
} revoke_entry;

struct revoke_set {
	revoke_entry *e;
	size_t n, cap;
	uint32_t *slots;  /* index + 1 into e; 0 = empty */
	size_t n_slots;   /* a power of two, > 2 * cap */
	char *path;       /* state file; NULL = in memory only */
	bool dirty;
	double last_save;
};

/* FNV-1a over 8-byte words (every task is looked up, so a byte at a time
 * cost more than the probe), the tail a byte at a time. */
static uint64_t hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	size_t n = strlen(s);
	for (; n >= 8; s += 8, n -= 8) {
		uint64_t w;
		memcpy(&w, s, sizeof w);
		h = (h ^ w) * 1099511628211ull;
		h ^= h >> 29;
	}
	for (; n; s++, n--)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot holding id, or the empty slot where it would go. */
static size_t find_slot(const revoke_set *s, const char *id)
{
	size_t mask = s->n_slots - 1;
	for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
		uint32_t v = s->slots[i];
		if (v == 0 || strcmp(s->e[v - 1].id, id) == 0)
			return i;
	}
}

static int rehash(revoke_set *s, size_t want_cap)
{
	size_t n_slots = 64;
	while (n_slots < 2 * want_cap + 2)
		n_slots *= 2;
	if (n_slots == s->n_slots) {
		memset(s->slots, 0, n_slots * sizeof *s->slots); /* no allocation to fail */
	} else {
		uint32_t *slots = calloc(n_slots, sizeof *slots);
		if (!slots)
			return WARREN_ENOMEM;
		free(s->slots);
		s->slots = slots;
		s->n_slots = n_slots;
	}
	for (size_t i = 0; i < s->n; i++)
		s->slots[find_slot(s, s->e[i].id)] = (uint32_t)(i + 1);
	return 0;
}

static int grow(revoke_set *s)
{
	size_t cap = s->cap ? s->cap * 2 : 256;
	revoke_entry *e = realloc(s->e, cap * sizeof *e);
	if (!e)
		return WARREN_ENOMEM;
	s->e = e;
	if (rehash(s, cap) != 0)
		return WARREN_ENOMEM; /* cap unchanged: the old slots still fit */
	s->cap = cap;
	return 0;
}

int revoke_set_new(const char *path, revoke_set **out, warren_error *err)
{
	revoke_set *s = calloc(1, sizeof *s);
	if (!s || grow(s) != 0 || (path && *path && !(s->path = strdup(path)))) {
		revoke_set_free(s);
		return warren_error_set(err, WARREN_ENOMEM, "revoked set: out of memory");
	}
	*out = s;
	return 0;
}

void revoke_set_free(revoke_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->e[i].id);
	free(s->e);
	free(s->slots);
	free(s->path);
	free(s);
}

const char *revoke_set_path(const revoke_set *s)
{
	return s->path;
}

static int cmp_when(const void *a, const void *b)
{
	double x = ((const revoke_entry *)a)->when, y = ((const revoke_entry *)b)->when;
	return x < y ? -1 : x > y;
}

size_t revoke_purge(revoke_set *s, double now)
{
	size_t before = s->n, k = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (s->e[i].when + REVOKE_EXPIRES <= now)
			free(s->e[i].id);
		else
			s->e[k++] = s->e[i];
	}
	s->n = k;
	if (s->n > REVOKE_MAX) {
		/* Oldest first out, as LimitedSet.pop does. */
		qsort(s->e, s->n, sizeof *s->e, cmp_when);
		size_t drop = s->n - REVOKE_MAX;
		for (size_t i = 0; i < drop; i++)
			free(s->e[i].id);
		memmove(s->e, s->e + drop, REVOKE_MAX * sizeof *s->e);
		s->n = REVOKE_MAX;
	}
	if (s->n != before) {
		s->dirty = true;
		rehash(s, s->cap); /* same size: cannot fail */
	}
	return before - s->n;
}

int revoke_add(revoke_set *s, const char *id, double when)
{
	if (!id || !*id)
		return WARREN_EINVAL;
	size_t slot = find_slot(s, id);
	if (s->slots[slot]) {
		revoke_entry *e = &s->e[s->slots[slot] - 1];
		if (when > e->when) { /* re-adding renews it, as LimitedSet.add */
			e->when = when;
			s->dirty = true;
		}
		return 0;
	}
	if (s->n == s->cap) {
		if (grow(s) != 0)
			return WARREN_ENOMEM;
		slot = find_slot(s, id);
	}
	char *copy = strdup(id);
	if (!copy)
		return WARREN_ENOMEM;
	s->e[s->n] = (revoke_entry){copy, when};
	s->slots[slot] = (uint32_t)(++s->n);
	s->dirty = true;
	/* Trim in batches so a flood of revokes does not sort on every add. */
	if (s->n > REVOKE_MAX + REVOKE_MAX / 16)
		revoke_purge(s, when);
	return 0;
}

bool revoke_contains(const revoke_set *s, const char *id, double now)
{
	if (!id || s->n == 0) /* the usual case: nothing revoked, no hashing */
		return false;
	uint32_t v = s->slots[find_slot(s, id)];
	return v && s->e[v - 1].when + REVOKE_EXPIRES > now;
}

size_t revoke_count(const revoke_set *s)
{
	return s->n;
}

const char *revoke_at(const revoke_set *s, size_t i, double *when)
{
	if (when)
		*when = s->e[i].when;
	return s->e[i].id;
}

/* ---- the state file -------------------------------------------------------- */

static int write_records(revoke_set *s, FILE *f)
{
	fprintf(f, "%s %d\n", REVOKE_STATE_MAGIC, REVOKE_STATE_VERSION);
	for (size_t i = 0; i < s->n; i++)
		if (!strchr(s->e[i].id, '\n'))
			fprintf(f, "%.6f %s\n", s->e[i].when, s->e[i].id);
	return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

static void sync_dir(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int revoke_save(revoke_set *s, double now, warren_error *err)
{
	if (!s->path)
		return 0;
	revoke_purge(s, now);
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return warren_error_set(err, WARREN_EIO, "statedb '%s': %s", tmp, strerror(errno));
	int rc = write_records(s, f);
	if (rc == 0 && fsync(fileno(f)) != 0)
		rc = -1;
	int saved_errno = errno;
	if (fclose(f) != 0 && rc == 0) {
		rc = -1;
		saved_errno = errno;
	}
	if (rc == 0 && rename(tmp, s->path) != 0) {
		rc = -1;
		saved_errno = errno;
	}
	if (rc != 0) {
		unlink(tmp);
		return warren_error_set(err, WARREN_EIO, "statedb '%s': %s", s->path,
					strerror(saved_errno));
	}
	sync_dir(s->path);
	s->dirty = false;
	s->last_save = now;
	return 0;
}

int revoke_maybe_save(revoke_set *s, double now, warren_error *err)
{
	if (!s->dirty || now - s->last_save < REVOKE_SAVE_INTERVAL)
		return 0;
	return revoke_save(s, now, err);
}

/* One "<when> <id>" line; malformed lines are skipped. */
static void load_line(revoke_set *s, char *line, double now, size_t *n)
{
	line[strcspn(line, "\n")] = '\0';
	char *end;
	double when = strtod(line, &end);
	if (end == line || *end != ' ' || !end[1] || when + REVOKE_EXPIRES <= now)
		return;
	if (revoke_add(s, end + 1, when) == 0)
		(*n)++;
}

int revoke_load(revoke_set *s, double now, size_t *loaded, warren_error *err)
{
	*loaded = 0;
	if (!s->path)
		return 0;
	FILE *f = fopen(s->path, "re");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		return warren_error_set(err, WARREN_EIO, "statedb '%s': %s", s->path,
					strerror(errno));
	}
	char line[1024];
	char magic[32];
	int version = 0;
	int rc = 0;
	if (!fgets(line, sizeof line, f) || sscanf(line, "%31s %d", magic, &version) != 2 ||
	    strcmp(magic, REVOKE_STATE_MAGIC) != 0 || version != REVOKE_STATE_VERSION) {
		rc = warren_error_set(err, WARREN_EDECODE,
				      "statedb '%s': not a version %d warren state file; ignored",
				      s->path, REVOKE_STATE_VERSION);
		goto out_close;
	}
	while (fgets(line, sizeof line, f))
		load_line(s, line, now, loaded);
	revoke_purge(s, now);
	s->dirty = false;
out_close:
	fclose(f);
	return rc;
}

/* ---- the default path -------------------------------------------------------------- */

/* mkdir -p, best effort: a failure shows up when the file is written. */
static void make_dirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(path, 0700);
		*p = '/';
	}
	mkdir(path, 0700);
}

/* Why not the working directory first: a service's is "/" and a developer's
 * is often a source tree; systemd hands a unit with StateDirectory= a
 * private, persistent directory in $STATE_DIRECTORY, and a user's worker
 * gets the XDG state directory, which survives reboots as the ids must. */
void revoke_default_path(const char *hostname, char *buf, size_t cap)
{
	char dir[3000] = ".";
	const char *sd = getenv("STATE_DIRECTORY"), *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	if (sd && *sd)
		snprintf(dir, sizeof dir, "%.*s", (int)strcspn(sd, ":"), sd); /* the first one */
	else if (xdg && *xdg)
		snprintf(dir, sizeof dir, "%s/warren", xdg);
	else if (home && *home)
		snprintf(dir, sizeof dir, "%s/.local/state/warren", home);
	make_dirs(dir);
	char name[300];
	snprintf(name, sizeof name, "%s", hostname);
	for (char *p = name; *p; p++)
		if (*p == '/')
			*p = '_';
	snprintf(buf, cap, "%s/worker-%s.state", dir, name);
}
