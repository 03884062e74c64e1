/* tests/unit/test_worker_job_headers.c - the threads pool hands a job's
 * headers to the handler still packed (pool_threads.c), unpacked only when
 * the handler asks: they must read the same as an eager unpack, every time,
 * and a job without (or with broken) headers still sees an empty map. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "worker/worker.h"

/* Packs the headers twice: the second call must give the same map. */
static int headers_twice(warren_task *t)
{
	msgpack_packer *pk = warren_task_result(t);
	msgpack_pack_array(pk, 2);
	msgpack_pack_object(pk, *warren_task_headers(t));
	msgpack_pack_object(pk, *warren_task_headers(t));
	return 0;
}

static pool_job *run_with_headers(const void *headers, size_t len)
{
	registry *reg = NULL;
	warren_error err = {0};
	cr_assert_eq(registry_new(&reg, &err), 0, "%s", err.msg);
	cr_assert_eq(registry_add(reg, "t.headers", headers_twice, NULL, &err), 0, "%s", err.msg);
	pool_job *job = calloc(1, sizeof *job);
	cr_assert(job);
	job->task_id = strdup("id-1");
	job->task_name = strdup("t.headers");
	if (len) {
		job->headers = malloc(len);
		memcpy(job->headers, headers, len);
		job->headers_len = len;
	}
	pool_job_execute(reg, job);
	registry_free(reg);
	return job;
}

static msgpack_object result_of(pool_job *job, msgpack_unpacked *u)
{
	cr_assert_eq(job->status, TASK_SUCCESS, "%s", job->exc_message ? job->exc_message : "");
	size_t off = 0;
	cr_assert_eq(msgpack_unpack_next(u, job->result, job->result_len, &off),
		     MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq(u->data.type, MSGPACK_OBJECT_ARRAY);
	cr_assert_eq(u->data.via.array.size, 2);
	return u->data;
}

Test(worker_job_headers, unpacked_on_demand_and_equal_each_time)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "lang", 4);
	msgpack_pack_str_with_body(&pk, "py", 2);
	msgpack_pack_str_with_body(&pk, "retries", 7);
	msgpack_pack_int(&pk, 3);
	pool_job *job = run_with_headers(sb.data, sb.size);
	msgpack_unpacked u, want;
	msgpack_unpacked_init(&u);
	msgpack_unpacked_init(&want);
	msgpack_object r = result_of(job, &u);
	size_t off = 0;
	cr_assert_eq(msgpack_unpack_next(&want, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
	cr_expect(msgpack_object_equal(r.via.array.ptr[0], want.data));
	cr_expect(msgpack_object_equal(r.via.array.ptr[1], want.data));
	msgpack_unpacked_destroy(&u);
	msgpack_unpacked_destroy(&want);
	msgpack_sbuffer_destroy(&sb);
	pool_job_free(job);
}

Test(worker_job_headers, none_or_broken_read_as_an_empty_map)
{
	static const char broken[] = "\x82\xa4lang"; /* a map of 2 cut short */
	pool_job *jobs[2] = {run_with_headers(NULL, 0),
			     run_with_headers(broken, sizeof broken - 1)};
	for (int i = 0; i < 2; i++) {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		msgpack_object r = result_of(jobs[i], &u);
		for (int k = 0; k < 2; k++) {
			cr_expect_eq(r.via.array.ptr[k].type, MSGPACK_OBJECT_MAP, "job %d", i);
			cr_expect_eq(r.via.array.ptr[k].via.map.size, 0, "job %d", i);
		}
		msgpack_unpacked_destroy(&u);
		pool_job_free(jobs[i]);
	}
}
