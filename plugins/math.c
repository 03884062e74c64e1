/* plugins/math.c - example plugin: math.add, math.mul, math.sum.
 *
 * Python semantics where int64 allows them: ints stay ints, any float makes
 * the result a float, and an int result that int64 cannot hold fails with
 * OverflowError (Python would grow a bignum; the wire has no bignums).
 */
#include <stdint.h>
#include <stdio.h>

#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

/* An int or a float argument, as Python would see it. */
typedef struct number {
	bool is_float;
	int64_t i;
	double f;
} number;

static double as_double(const number *n)
{
	return n->is_float ? n->f : (double)n->i;
}

/* Converts an element the schema check let through as "float" (int or
 * float); -1 after failing the task for a uint64 beyond int64. */
static int to_number(warren_task *t, const char *label, const msgpack_object *o, number *n)
{
	*n = (number){0};
	switch (o->type) {
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX)
			return warren_task_fail(t, "OverflowError", "%s: %s: %llu does not fit in int64",
						warren_task_name(t), label, (unsigned long long)o->via.u64);
		n->i = (int64_t)o->via.u64;
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		n->i = o->via.i64;
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		n->is_float = true;
		n->f = o->via.f64;
		return 0;
	default:
		return warren_task_fail(t, "TypeError", "%s: %s: expected int or float",
					warren_task_name(t), label);
	}
}

static int number_arg(warren_task *t, size_t i, const char *label, number *n)
{
	const msgpack_object *o;
	if (warren_task_arg_object(t, i, WARREN_TYPE_FLOAT, &o) != 0)
		return -1;
	return to_number(t, label, o, n);
}

static int pack_number(warren_task *t, const number *n)
{
	msgpack_packer *pk = warren_task_result(t);
	return n->is_float ? msgpack_pack_double(pk, n->f) : msgpack_pack_int64(pk, n->i);
}

static int overflow(warren_task *t)
{
	return warren_task_fail(t, "OverflowError", "%s: int64 overflow", warren_task_name(t));
}

/* Both add and mul: read two numbers, combine as ints or floats. */
static int binary(warren_task *t, bool multiply)
{
	number a, b, r = {0};
	if (number_arg(t, 0, "argument a", &a) != 0 || number_arg(t, 1, "argument b", &b) != 0)
		return -1;
	if (a.is_float || b.is_float) {
		r.is_float = true;
		r.f = multiply ? as_double(&a) * as_double(&b) : as_double(&a) + as_double(&b);
	} else if (multiply ? __builtin_mul_overflow(a.i, b.i, &r.i)
			    : __builtin_add_overflow(a.i, b.i, &r.i)) {
		return overflow(t);
	}
	pack_number(t, &r);
	return 0;
}

static int add(warren_task *t)
{
	return binary(t, false);
}

static int mul(warren_task *t)
{
	return binary(t, true);
}

/* sum(numbers): like Python's sum() of ints and floats; [] sums to 0. */
static int sum(warren_task *t)
{
	const msgpack_object *list;
	if (warren_task_arg_object(t, 0, WARREN_TYPE_LIST, &list) != 0)
		return -1;
	number total = {0};
	for (uint32_t i = 0; i < list->via.array.size; i++) {
		char label[48];
		number n;
		snprintf(label, sizeof label, "argument numbers[%u]", (unsigned)i);
		if (to_number(t, label, &list->via.array.ptr[i], &n) != 0)
			return -1;
		if (total.is_float || n.is_float) {
			total.f = as_double(&total) + as_double(&n);
			total.is_float = true;
		} else if (__builtin_add_overflow(total.i, n.i, &total.i)) {
			return overflow(t);
		}
	}
	pack_number(t, &total);
	return 0;
}

/* "float" in a schema admits ints too: both operands may be either. */
static const warren_param two_numbers[] = {
	{.name = "a", .type = WARREN_TYPE_FLOAT, .required = 1},
	{.name = "b", .type = WARREN_TYPE_FLOAT, .required = 1},
};
static const warren_task_schema binary_schema = {
	.params = two_numbers, .n_params = 2, .result = WARREN_TYPE_FLOAT,
};
static const warren_param one_list[] = {
	{.name = "numbers", .type = WARREN_TYPE_LIST, .required = 1},
};
static const warren_task_schema sum_schema = {
	.params = one_list, .n_params = 1, .result = WARREN_TYPE_FLOAT,
};
static const warren_task_options binary_options = {.schema = &binary_schema};
static const warren_task_options sum_options = {.schema = &sum_schema};

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	if (warren_register(reg, "math.add", add, &binary_options) != 0 ||
	    warren_register(reg, "math.mul", mul, &binary_options) != 0 ||
	    warren_register(reg, "math.sum", sum, &sum_options) != 0)
		return -1;
	return 0;
}
