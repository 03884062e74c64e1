/* producer/pipeline.c - running a YAML pipeline bound to its inputs
 * (config/pipeline_bind.c) as a warren canvas, following its progress, and
 * the run record `warren pipeline status ID` reads from another process.
 *
 * Every task of the tree gets its task id here, before the canvas is
 * composed (schema_canvas_freeze keeps the ids it is given), so a run knows
 * the id of every step and not only of those that make its result: progress
 * is counted over all of them. A map is sent as a group of its items, each
 * immutable as in Celery's xmap, rather than as one celery.map task: each
 * item is then a step of its own, and a map that is a chord's header gives
 * the body one result per item, as it must.
 *
 * A step with ignore_result stores no state, so it is not followed; the run
 * counts it in n_untracked. max_retries is not sent: neither Celery's nor
 * warren's task message carries it (it is the worker's task setting).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "producer.h"

/* ---- run ---- */

void producer_pipeline_run_free(producer_pipeline_run *run)
{
	if (!run)
		return;
	for (size_t i = 0; i < run->n_steps; i++) {
		free(run->steps[i].task_id);
		free(run->steps[i].task);
		free(run->steps[i].node);
	}
	free(run->steps);
	for (size_t i = 0; i < run->n_result_ids; i++)
		free(run->result_ids[i]);
	free(run->result_ids);
	free(run->id);
	free(run->pipeline);
	free(run->inputs_json);
	free(run);
}

static int nomem(warren_error *err)
{
	return warren_error_set(err, WARREN_ENOMEM, "pipeline: out of memory");
}

static int add_step(producer_pipeline_run *run, const char *id, const char *task,
		    const char *node)
{
	producer_pipeline_step *p = realloc(run->steps, (run->n_steps + 1) * sizeof *p);
	if (!p)
		return WARREN_ENOMEM;
	run->steps = p;
	producer_pipeline_step *s = &run->steps[run->n_steps];
	*s = (producer_pipeline_step){strdup(id), strdup(task), strdup(node)};
	run->n_steps++;
	return s->task_id && s->task && s->node ? 0 : WARREN_ENOMEM;
}

/* ---- packed msgpack -> warren_args ---- */

static int put_value(warren_args *a, const msgpack_object *o);

static int put_key(warren_args *a, const msgpack_object *k)
{
	if (k->type != MSGPACK_OBJECT_STR)
		return WARREN_EENCODE; /* warren_args keys are strings */
	char *key = strndup(k->via.str.ptr, k->via.str.size);
	if (!key)
		return WARREN_ENOMEM;
	int rc = warren_args_key(a, key);
	free(key);
	return rc;
}

static int put_value(warren_args *a, const msgpack_object *o)
{
	int rc = 0;
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return warren_args_nil(a);
	case MSGPACK_OBJECT_BOOLEAN:
		return warren_args_bool(a, o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX)
			return WARREN_EENCODE;
		return warren_args_int(a, (int64_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return warren_args_int(a, o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return warren_args_float(a, o->via.f64);
	case MSGPACK_OBJECT_STR:
		return warren_args_strn(a, o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_BIN:
		return warren_args_bytes(a, o->via.bin.ptr, o->via.bin.size);
	case MSGPACK_OBJECT_ARRAY:
		if ((rc = warren_args_begin_list(a)))
			return rc;
		for (uint32_t i = 0; !rc && i < o->via.array.size; i++)
			rc = put_value(a, &o->via.array.ptr[i]);
		return rc ? rc : warren_args_end_list(a);
	case MSGPACK_OBJECT_MAP:
		if ((rc = warren_args_begin_map(a)))
			return rc;
		for (uint32_t i = 0; !rc && i < o->via.map.size; i++)
			if (!(rc = put_key(a, &o->via.map.ptr[i].key)))
				rc = put_value(a, &o->via.map.ptr[i].val);
		return rc ? rc : warren_args_end_map(a);
	default:
		return WARREN_EENCODE; /* ext: never left after binding */
	}
}

/* A builder holding the packed array (is_map false) or map mp. */
static int args_of(const void *mp, size_t len, bool is_map, const char *what,
		   const char *node, warren_args **out, warren_error *err)
{
	*out = is_map ? warren_kwargs_new() : warren_args_new();
	if (!*out)
		return nomem(err);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int rc = 0;
	if (msgpack_unpack_next(&u, mp, len, NULL) != MSGPACK_UNPACK_SUCCESS ||
	    u.data.type != (is_map ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY)) {
		rc = warren_error_set(err, WARREN_EDECODE, "pipeline: %s: %s are not a %s", node,
				      what, is_map ? "map" : "list");
		goto out;
	}
	const msgpack_object *o = &u.data;
	if (is_map) {
		for (uint32_t i = 0; !rc && i < o->via.map.size; i++)
			if (!(rc = put_key(*out, &o->via.map.ptr[i].key)))
				rc = put_value(*out, &o->via.map.ptr[i].val);
	} else {
		for (uint32_t i = 0; !rc && i < o->via.array.size; i++)
			rc = put_value(*out, &o->via.array.ptr[i]);
	}
	if (rc)
		rc = rc == WARREN_ENOMEM ? nomem(err)
					 : warren_error_set(err, rc, "pipeline: %s: %s: a value that "
							    "cannot be sent (a non-string key, an "
							    "integer over 2^63)", node, what);
out:
	msgpack_unpacked_destroy(&u);
	if (rc) {
		warren_args_free(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- bound tree -> signature ---- */

typedef struct build_ctx {
	producer_pipeline_run *run;
	const char *queue; /* overrides every node's queue when set */
	const char *prefix; /* "pipelines.NAME." stripped from node paths */
	warren_error *err;
} build_ctx;

static int set_num(warren_sig *s, const char *key, double v, warren_error *err)
{
	char text[40];
	snprintf(text, sizeof text, "%.17g", v);
	return warren_sig_set_option(s, key, text, err);
}

static int apply_options(build_ctx *b, warren_sig *s, const pipeline_options *o)
{
	warren_error *err = b->err;
	int rc = 0;
	const char *queue = b->queue ? b->queue : o->set & PIPELINE_OPT_QUEUE ? o->queue : NULL;
	if (queue)
		rc = warren_sig_set_queue(s, queue, err);
	if (!rc && o->set & PIPELINE_OPT_COUNTDOWN && o->countdown > 0)
		rc = warren_sig_set_countdown(s, o->countdown, err);
	if (!rc && o->set & PIPELINE_OPT_EXPIRES)
		rc = set_num(s, "expires", o->expires, err);
	if (!rc && o->set & PIPELINE_OPT_TIME_LIMIT)
		rc = set_num(s, "time_limit", o->time_limit, err);
	if (!rc && o->set & PIPELINE_OPT_SOFT_TIME_LIMIT)
		rc = set_num(s, "soft_time_limit", o->soft_time_limit, err);
	if (!rc && o->set & PIPELINE_OPT_PRIORITY)
		rc = set_num(s, "priority", o->priority, err);
	if (!rc && o->set & PIPELINE_OPT_IGNORE_RESULT && o->ignore_result)
		rc = warren_sig_set_option(s, "ignore_result", "true", err);
	if (!rc && o->set & PIPELINE_OPT_IMMUTABLE && o->immutable)
		rc = warren_sig_set_immutable(s, true, err);
	return rc;
}

static void node_name(const build_ctx *b, const pipeline_bound_node *n, long item, char *buf,
		      size_t cap)
{
	const char *path = n->def && n->def->path ? n->def->path : "run";
	size_t pl = strlen(b->prefix);
	if (!strncmp(path, b->prefix, pl))
		path += pl;
	if (item >= 0)
		snprintf(buf, cap, "%s[%ld]", path, item);
	else
		snprintf(buf, cap, "%s", path);
}

static int build_task(build_ctx *b, const pipeline_bound_node *n, long item, warren_sig **out)
{
	char node[256];
	node_name(b, n, item, node, sizeof node);
	warren_args *args = NULL, *kwargs = NULL;
	int rc = args_of(n->args_mp, n->args_len, false, "args", node, &args, b->err);
	if (!rc)
		rc = args_of(n->kwargs_mp, n->kwargs_len, true, "kwargs", node, &kwargs, b->err);
	if (!rc)
		rc = warren_sig_new(n->task, args, kwargs, out, b->err);
	warren_args_free(kwargs);
	warren_args_free(args);
	if (rc)
		return rc;
	char id[37];
	if ((rc = schema_uuid4(id, b->err)) || (rc = warren_sig_set_task_id(*out, id, b->err)) ||
	    (rc = apply_options(b, *out, &n->options)))
		goto out_sig;
	if (n->options.set & PIPELINE_OPT_IGNORE_RESULT && n->options.ignore_result)
		b->run->n_untracked++;
	else if (add_step(b->run, id, n->task, node))
		rc = nomem(b->err);
	if (rc)
		goto out_sig;
	return 0;
out_sig:
	warren_sig_free(*out);
	*out = NULL;
	return rc;
}

static int build_node(build_ctx *b, const pipeline_bound_node *n, warren_sig **out);

/* Builds n children (map items when is_map) into a new array of sigs. */
static int build_list(build_ctx *b, const pipeline_bound_node *kids, size_t n, bool is_map,
		      warren_sig ***out)
{
	warren_sig **sigs = calloc(n ? n : 1, sizeof *sigs);
	if (!sigs)
		return nomem(b->err);
	int rc = 0;
	for (size_t i = 0; !rc && i < n; i++)
		rc = is_map ? build_task(b, &kids[i], (long)i, &sigs[i])
			    : build_node(b, &kids[i], &sigs[i]);
	if (rc) {
		for (size_t i = 0; i < n; i++)
			warren_sig_free(sigs[i]);
		free(sigs);
		return rc;
	}
	*out = sigs;
	return 0;
}

static void free_list(warren_sig **sigs, size_t n)
{
	for (size_t i = 0; sigs && i < n; i++)
		warren_sig_free(sigs[i]);
	free(sigs);
}

static int build_node(build_ctx *b, const pipeline_bound_node *n, warren_sig **out)
{
	warren_sig **sigs = NULL, *body = NULL;
	size_t count = n->n_children;
	int rc;
	switch (n->kind) {
	case PIPELINE_TASK:
		return build_task(b, n, -1, out);
	case PIPELINE_CHAIN:
	case PIPELINE_GROUP:
	case PIPELINE_MAP:
		if ((rc = build_list(b, n->children, count, n->kind == PIPELINE_MAP, &sigs)))
			return rc;
		rc = n->kind == PIPELINE_CHAIN
			     ? warren_chain((const warren_sig *const *)sigs, count, out, b->err)
			     : warren_group((const warren_sig *const *)sigs, count, out, b->err);
		break;
	case PIPELINE_CHORD:
		if (!n->header || !n->body)
			return warren_error_set(b->err, WARREN_EINVAL, "pipeline: a chord without "
						"a header or a body");
		count = n->header->n_children;
		if ((rc = build_list(b, n->header->children, count,
				     n->header->kind == PIPELINE_MAP, &sigs)))
			return rc;
		if (!(rc = build_node(b, n->body, &body)))
			rc = warren_chord((const warren_sig *const *)sigs, count, body, out, b->err);
		warren_sig_free(body);
		break;
	default:
		return warren_error_set(b->err, WARREN_EINVAL, "pipeline: unknown node kind %d",
					(int)n->kind);
	}
	free_list(sigs, count);
	return rc;
}

/* ---- the record (wire format: bump "v" when a field changes meaning;
 * readers refuse a v they do not know) ---- */

#define RECORD_VERSION 1
#define RECORD_PREFIX "warren-pipeline-"

/* o's compact text with `"key":raw` added at the end (raw: JSON text kept
 * as warren wrote it, floats in their shortest form). malloc'd. */
static char *dump_with_raw(json_t *o, const char *key, const char *raw)
{
	char *base = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (!base)
		return NULL;
	size_t bl = strlen(base), need = bl + strlen(key) + strlen(raw) + 8;
	char *s = malloc(need);
	if (s && bl >= 2)
		snprintf(s, need, "%.*s%s\"%s\":%s}", (int)(bl - 1), base, bl > 2 ? "," : "", key,
			 raw);
	free(base);
	return s;
}

static char *record_json(const producer_pipeline_run *run)
{
	json_t *steps = json_array(), *rids = json_array();
	for (size_t i = 0; steps && i < run->n_steps; i++)
		json_array_append_new(steps, json_pack("{s:s,s:s,s:s}", "id", run->steps[i].task_id,
						       "task", run->steps[i].task, "node",
						       run->steps[i].node));
	for (size_t i = 0; rids && i < run->n_result_ids; i++)
		json_array_append_new(rids, json_string(run->result_ids[i]));
	json_t *o = json_pack("{s:i,s:s,s:s,s:f,s:o,s:b,s:I,s:o}", "v", RECORD_VERSION, "id",
			      run->id, "pipeline", run->pipeline, "started", run->started, "result",
			      rids, "result_is_list", run->result_is_list, "untracked",
			      (json_int_t)run->n_untracked, "steps", steps);
	char *text = dump_with_raw(o, "inputs", run->inputs_json ? run->inputs_json : "{}");
	json_decref(o);
	return text;
}

/* JSON text (jansson's, floats with 17 digits) in warren's form: parsed
 * into msgpack and written by warren_msgpack_to_json. malloc'd, or NULL. */
static char *json_canon(const char *text)
{
	warren_args *a = warren_args_new();
	const void *mp;
	size_t len;
	char *out = NULL;
	if (a && !warren_args_json(a, text) && !warren_args_packed(a, &mp, &len, NULL)) {
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		if (msgpack_unpack_next(&u, mp, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
		    u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 1)
			out = producer_object_to_json(&u.data.via.array.ptr[0]);
		msgpack_unpacked_destroy(&u);
	}
	warren_args_free(a);
	return out;
}

static void record_options(const warren_client *c, backend_options *o)
{
	backend_options_default(o);
	if (c->cfg)
		o->result_expires = c->cfg->result_backend.result_expires;
}

int producer_pipeline_record_put(warren_client *c, const producer_pipeline_run *run,
				 warren_error *err)
{
	char *text = record_json(run);
	if (!text)
		return nomem(err);
	backend_options o;
	record_options(c, &o);
	char key[WARREN_TASK_ID_MAX + sizeof RECORD_PREFIX];
	snprintf(key, sizeof key, RECORD_PREFIX "%s", run->id);
	int rc = backend_record_put(c->backend_url, &o, key, text, strlen(text), o.result_expires,
				    err);
	free(text);
	return rc;
}

static char *dup_str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? strdup(s) : NULL;
}

static int record_parse(const char *id, const char *text, producer_pipeline_run **out,
			warren_error *err)
{
	json_error_t jerr;
	json_t *o = json_loads(text, 0, &jerr);
	producer_pipeline_run *run = calloc(1, sizeof *run);
	int rc = 0;
	if (!run) {
		rc = nomem(err);
		goto out;
	}
	json_t *steps = json_object_get(o, "steps"), *rids = json_object_get(o, "result");
	if (!json_is_object(o) || json_integer_value(json_object_get(o, "v")) != RECORD_VERSION ||
	    !json_is_array(steps) || !json_is_array(rids) ||
	    !json_is_string(json_object_get(o, "pipeline"))) {
		rc = warren_error_set(err, WARREN_EDECODE, "pipeline run '%s': its record is not "
				      "a version %d run record", id, RECORD_VERSION);
		goto out;
	}
	run->id = strdup(id);
	run->pipeline = dup_str(o, "pipeline");
	json_t *inputs = json_object_get(o, "inputs");
	char *raw = inputs ? json_dumps(inputs, JSON_COMPACT | JSON_ENCODE_ANY |
					    JSON_REAL_PRECISION(17)) : NULL;
	run->inputs_json = raw ? json_canon(raw) : NULL;
	free(raw);
	run->started = json_number_value(json_object_get(o, "started"));
	run->result_is_list = json_is_true(json_object_get(o, "result_is_list"));
	run->n_untracked = (size_t)json_integer_value(json_object_get(o, "untracked"));
	if (!run->id || !run->pipeline) {
		rc = nomem(err);
		goto out;
	}
	size_t i;
	json_t *v;
	json_array_foreach(steps, i, v) {
		const char *sid = json_string_value(json_object_get(v, "id"));
		const char *task = json_string_value(json_object_get(v, "task"));
		const char *node = json_string_value(json_object_get(v, "node"));
		if (!sid || !task || !node) {
			rc = warren_error_set(err, WARREN_EDECODE, "pipeline run '%s': step %zu of its "
					      "record lacks id, task or node", id, i);
			goto out;
		}
		if (add_step(run, sid, task, node)) {
			rc = nomem(err);
			goto out;
		}
	}
	if (!(run->result_ids = calloc(json_array_size(rids) + 1, sizeof *run->result_ids))) {
		rc = nomem(err);
		goto out;
	}
	json_array_foreach(rids, i, v) {
		const char *s = json_string_value(v);
		if (!s || !(run->result_ids[run->n_result_ids++] = strdup(s))) {
			rc = s ? nomem(err) : warren_error_set(err, WARREN_EDECODE,
							       "pipeline run '%s': bad result id", id);
			goto out;
		}
	}
out:
	json_decref(o);
	if (rc) {
		producer_pipeline_run_free(run);
		return rc;
	}
	*out = run;
	return 0;
}

int producer_pipeline_record_get(warren_client *c, const char *id, producer_pipeline_run **out,
				 warren_error *err)
{
	*out = NULL;
	if (!id || !*id || strlen(id) >= WARREN_TASK_ID_MAX)
		return warren_error_set(err, WARREN_EINVAL, "pipeline run id must be 1 to %d bytes",
					WARREN_TASK_ID_MAX - 1);
	backend_options o;
	record_options(c, &o);
	char key[WARREN_TASK_ID_MAX + sizeof RECORD_PREFIX];
	snprintf(key, sizeof key, RECORD_PREFIX "%s", id);
	char *text = NULL;
	warren_error why = {0};
	int rc = backend_record_get(c->backend_url, &o, key, &text, NULL, &why);
	if (rc == WARREN_ENOTFOUND)
		rc = warren_error_set(err, rc, "pipeline run '%s': no record (unknown id, or "
				      "expired with its results)", id);
	else if (rc)
		rc = warren_error_set(err, rc, "%s", why.msg);
	if (!rc)
		rc = record_parse(id, text, out, err);
	free(text);
	return rc;
}

/* ---- start ---- */

int producer_pipeline_start(warren_client *c, const pipeline_bound *bound, const char *queue,
			    producer_pipeline_run **out, warren_error *err)
{
	if (!c || !bound || !bound->root || !out)
		return warren_error_set(err, WARREN_EINVAL, "pipeline: NULL argument");
	*out = NULL;
	producer_pipeline_run *run = calloc(1, sizeof *run);
	if (!run)
		return nomem(err);
	char prefix[256];
	snprintf(prefix, sizeof prefix, "pipelines.%s.", bound->def->name);
	build_ctx b = {.run = run, .queue = queue, .prefix = prefix, .err = err};
	warren_sig *sig = NULL;
	warren_canvas *cv = NULL;
	int rc = 0;
	if (!(run->pipeline = strdup(bound->def->name))) {
		rc = nomem(err);
		goto out_run;
	}
	if (bound->inputs_mp && bound->inputs_len &&
	    (rc = warren_msgpack_to_json(bound->inputs_mp, bound->inputs_len, &run->inputs_json,
					 err)))
		goto out_run;
	if ((rc = build_node(&b, bound->root, &sig)))
		goto out_run;
	run->started = (double)producer_now_us() / 1e6;
	if ((rc = warren_canvas_send(c, sig, &cv, err)))
		goto out_sig;
	const char *const *ids;
	size_t n = warren_canvas_ids(cv, &ids);
	const char *cid = warren_canvas_id(cv);
	run->result_is_list = !(n == 1 && !strcmp(ids[0], cid));
	if (!(run->id = strdup(cid)) ||
	    !(run->result_ids = calloc(n ? n : 1, sizeof *run->result_ids))) {
		rc = nomem(err);
		goto out_cv;
	}
	for (size_t i = 0; i < n; i++, run->n_result_ids++)
		if (!(run->result_ids[i] = strdup(ids[i]))) {
			rc = nomem(err);
			goto out_cv;
		}
	warren_canvas_free(cv);
	warren_sig_free(sig);
	*out = run;
	return 0;
out_cv:
	warren_canvas_free(cv);
out_sig:
	warren_sig_free(sig);
out_run:
	producer_pipeline_run_free(run);
	return rc;
}

/* ---- progress ---- */

int producer_pipeline_poll(warren_client *c, const producer_pipeline_run *run,
			   warren_result **results, int timeout_ms, warren_error *err)
{
	size_t n = 0;
	const char **ids = calloc(run->n_steps ? run->n_steps : 1, sizeof *ids);
	size_t *at = calloc(run->n_steps ? run->n_steps : 1, sizeof *at);
	warren_result **got = calloc(run->n_steps ? run->n_steps : 1, sizeof *got);
	int rc = 0;
	if (!ids || !at || !got) {
		rc = nomem(err);
		goto out;
	}
	for (size_t i = 0; i < run->n_steps; i++)
		if (!results[i] || !warren_result_ready(results[i])) {
			at[n] = i;
			ids[n++] = run->steps[i].task_id;
		}
	if (!n)
		goto out;
	rc = warren_result_wait_many(c, ids, n, timeout_ms, got, NULL, err);
	if (rc == WARREN_ETIMEOUT)
		rc = 0;
	for (size_t k = 0; !rc && k < n; k++) {
		if (!got[k] || !warren_result_ready(got[k]))
			continue;
		warren_result_free(results[at[k]]);
		results[at[k]] = got[k];
		got[k] = NULL;
	}
	for (size_t k = 0; k < n; k++)
		warren_result_free(got[k]);
out:
	free(got);
	free(at);
	free(ids);
	return rc;
}

int producer_pipeline_peek(warren_client *c, const producer_pipeline_run *run,
			   warren_result **results, warren_error *err)
{
	for (size_t i = 0; i < run->n_steps; i++) {
		if (results[i] && warren_result_ready(results[i]))
			continue;
		warren_result *r = NULL;
		int rc = warren_result_get(c, run->steps[i].task_id, &r, err);
		if (rc)
			return rc;
		warren_result_free(results[i]);
		results[i] = r;
	}
	return 0;
}

int producer_pipeline_result_json(const producer_pipeline_run *run,
				  warren_result *const *results, char **json, warren_error *err)
{
	*json = NULL;
	size_t cap = 8, len = 0; /* [ ] or null, and the NUL */
	const char **parts = calloc(run->n_result_ids ? run->n_result_ids : 1, sizeof *parts);
	if (!parts)
		return nomem(err);
	for (size_t k = 0; k < run->n_result_ids; k++) {
		const warren_result *r = NULL;
		for (size_t i = 0; !r && i < run->n_steps; i++)
			if (!strcmp(run->steps[i].task_id, run->result_ids[k]))
				r = results[i];
		if (!r || warren_result_state(r) != WARREN_STATE_SUCCESS) {
			free(parts);
			return warren_error_set(err, WARREN_ENOTFOUND, "pipeline run '%s': result "
						"of '%s' not ready", run->id, run->result_ids[k]);
		}
		parts[k] = warren_result_json(r) ? warren_result_json(r) : "null";
		cap += strlen(parts[k]) + 2; /* and ", " */
	}
	char *s = malloc(cap);
	if (!s) {
		free(parts);
		return nomem(err);
	}
	if (run->result_is_list)
		s[len++] = '[';
	for (size_t k = 0; k < run->n_result_ids; k++) {
		if (k) { /* ", " as warren_msgpack_to_json writes lists */
			s[len++] = ',';
			s[len++] = ' ';
		}
		size_t m = strlen(parts[k]);
		memcpy(s + len, parts[k], m);
		len += m;
	}
	if (run->result_is_list)
		s[len++] = ']';
	if (!run->result_is_list && run->n_result_ids == 0) { /* nothing makes a result */
		memcpy(s + len, "null", 4);
		len += 4;
	}
	s[len] = '\0';
	free(parts);
	*json = s;
	return 0;
}
