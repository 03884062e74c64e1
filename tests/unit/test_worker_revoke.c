/* tests/unit/test_worker_revoke.c - the revoked set (worker/revoke.c): expiry
 * and the REVOKE_MAX bound as Celery's LimitedSet, the state file's round
 * trip, version check and atomic write, and Celery's node names
 * (control_nodename). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/worker.h"

#define T0 1800000000.0

static char path[128];

static void setup(void)
{
	snprintf(path, sizeof path, "/tmp/warren-revoke-test.%d.state", (int)getpid());
	unlink(path);
}

static void teardown(void)
{
	unlink(path);
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	unlink(tmp);
}

TestSuite(worker_revoke, .init = setup, .fini = teardown);

Test(worker_revoke, ids_expire_after_three_hours)
{
	revoke_set *s = NULL;
	warren_error err = {0};
	cr_assert_eq(revoke_set_new(NULL, &s, &err), 0, "%s", err.msg);
	cr_assert_eq(revoke_add(s, "a", T0), 0);
	cr_expect(revoke_contains(s, "a", T0 + 10799));
	cr_expect(!revoke_contains(s, "a", T0 + 10800));
	cr_expect(!revoke_contains(s, "b", T0));
	cr_expect_eq(revoke_add(s, "", T0), WARREN_EINVAL);
	/* Re-adding renews, as LimitedSet.add. */
	cr_assert_eq(revoke_add(s, "a", T0 + 100), 0);
	cr_expect(revoke_contains(s, "a", T0 + 10850));
	cr_expect_eq(revoke_purge(s, T0 + 20000), 1);
	cr_expect_eq(revoke_count(s), 0);
	revoke_set_free(s);
}

Test(worker_revoke, holds_at_most_revoke_max_dropping_the_oldest)
{
	revoke_set *s = NULL;
	cr_assert_eq(revoke_set_new(NULL, &s, NULL), 0);
	char id[32];
	for (int i = 0; i < REVOKE_MAX + 5000; i++) {
		snprintf(id, sizeof id, "t-%d", i);
		cr_assert_eq(revoke_add(s, id, T0 + i * 0.001), 0);
	}
	revoke_purge(s, T0 + 60);
	cr_expect_eq(revoke_count(s), REVOKE_MAX);
	cr_expect(!revoke_contains(s, "t-0", T0 + 60));
	cr_expect(!revoke_contains(s, "t-4999", T0 + 60));
	cr_expect(revoke_contains(s, "t-5000", T0 + 60));
	snprintf(id, sizeof id, "t-%d", REVOKE_MAX + 4999);
	cr_expect(revoke_contains(s, id, T0 + 60));
	revoke_set_free(s);
}

Test(worker_revoke, state_file_round_trip_skips_expired)
{
	revoke_set *s = NULL;
	warren_error err = {0};
	cr_assert_eq(revoke_set_new(path, &s, &err), 0);
	revoke_add(s, "old", T0 - 20000);
	revoke_add(s, "fresh", T0 - 10);
	revoke_add(s, "with space", T0);
	cr_assert_eq(revoke_save(s, T0 - 10000, &err), 0, "%s", err.msg);
	revoke_set_free(s);

	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char line[128];
	cr_assert_not_null(fgets(line, sizeof line, f));
	cr_expect_str_eq(line, "warren-revoked 1\n");
	fclose(f);

	cr_assert_eq(revoke_set_new(path, &s, &err), 0);
	size_t loaded = 0;
	cr_assert_eq(revoke_load(s, T0, &loaded, &err), 0, "%s", err.msg);
	cr_expect_eq(loaded, 2);
	cr_expect(revoke_contains(s, "fresh", T0));
	cr_expect(revoke_contains(s, "with space", T0));
	cr_expect(!revoke_contains(s, "old", T0));
	revoke_set_free(s);
}

Test(worker_revoke, another_version_is_ignored_and_a_missing_file_is_empty)
{
	revoke_set *s = NULL;
	warren_error err = {0};
	size_t loaded = 7;
	cr_assert_eq(revoke_set_new(path, &s, &err), 0);
	cr_expect_eq(revoke_load(s, T0, &loaded, &err), 0);
	cr_expect_eq(loaded, 0);
	FILE *f = fopen(path, "w");
	fputs("warren-revoked 2\n1800000000.0 x\n", f);
	fclose(f);
	cr_expect_eq(revoke_load(s, T0, &loaded, &err), WARREN_EDECODE);
	cr_expect(strstr(err.msg, "not a version 1") != NULL, "%s", err.msg);
	cr_expect_eq(revoke_count(s), 0);
	revoke_set_free(s);
}

Test(worker_revoke, save_is_throttled_and_leaves_no_temp_file)
{
	revoke_set *s = NULL;
	cr_assert_eq(revoke_set_new(path, &s, NULL), 0);
	revoke_add(s, "a", T0);
	cr_assert_eq(revoke_maybe_save(s, T0, NULL), 0);
	cr_expect_eq(access(path, F_OK), 0);
	revoke_add(s, "b", T0 + 0.5);
	unlink(path);
	cr_assert_eq(revoke_maybe_save(s, T0 + 0.5, NULL), 0);
	cr_expect_neq(access(path, F_OK), 0, "written again within a second");
	cr_assert_eq(revoke_maybe_save(s, T0 + 1.5, NULL), 0);
	cr_expect_eq(access(path, F_OK), 0);
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	cr_expect_neq(access(tmp, F_OK), 0);
	revoke_set_free(s);
}

Test(worker_revoke, node_names_expand_like_celery)
{
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	char want[600], got[600];
	control_nodename(NULL, got, sizeof got);
	snprintf(want, sizeof want, "celery@%s", host);
	cr_expect_str_eq(got, want);
	control_nodename("w1@%h", got, sizeof got);
	snprintf(want, sizeof want, "w1@%s", host);
	cr_expect_str_eq(got, want);
	control_nodename("box", got, sizeof got);
	cr_expect_str_eq(got, "celery@box");
	control_nodename("a%%b@x", got, sizeof got);
	cr_expect_str_eq(got, "a%b@x");
	control_nodename("w@%n", got, sizeof got);
	snprintf(want, sizeof want, "w@%.*s", (int)strcspn(host, "."), host);
	cr_expect_str_eq(got, want);
}
