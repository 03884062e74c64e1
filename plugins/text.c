/* plugins/text.c - example plugin: text.upper, text.wordcount.
 *
 * Both decode UTF-8 strictly (invalid input fails with ValueError, as
 * Python's decoder would) and follow Python's str.upper() and str.split()
 * for the scripts they know: ASCII, Latin-1 Supplement, Latin Extended-A,
 * basic Greek and Cyrillic. Other characters pass through unchanged.
 */
#include <stdint.h>
#include <stdlib.h>

#include "warren/plugin.h"

WARREN_PLUGIN_DEFINE_ABI();

/* Decodes one code point at s (n bytes left); returns its length, 0 if the
 * bytes are not valid UTF-8 (overlong, surrogate, above U+10FFFF, cut). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
	if (len == 0 || s[0] > 0xf4 || len > n)
		return 0;
	uint32_t c = s[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	static const uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
	if (c < min_for_len[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static size_t utf8_encode(uint32_t cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | (cp >> 6));
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | (cp >> 12));
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | (cp >> 18));
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Latin Extended-A pairs capitals and small letters as (even, odd) in three
 * runs and as (odd, even) in two. */
static uint32_t upper_latin_ext_a(uint32_t c)
{
	bool odd = c & 1;
	if ((c <= 0x12f) || (c >= 0x132 && c <= 0x137) || (c >= 0x14a && c <= 0x177))
		return odd ? c - 1 : c;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
		return odd ? c : c - 1;
	if (c == 0x131) /* dotless i */
		return 'I';
	if (c == 0x17f) /* long s */
		return 'S';
	return c;
}

static uint32_t upper_greek(uint32_t c)
{
	if (c == 0x3c2) /* final sigma */
		return 0x3a3;
	if (c >= 0x3b1 && c <= 0x3cb)
		return c - 0x20;
	if (c == 0x3ac)
		return 0x386;
	if (c >= 0x3ad && c <= 0x3af)
		return c - 0x25;
	if (c == 0x3cc)
		return 0x38c;
	if (c >= 0x3cd && c <= 0x3ce)
		return c - 0x3f;
	return c;
}

/* Upper case of c into out; returns how many code points (1 or 2: Python
 * upper-cases ß to "SS" and ŉ to "ʼN"). */
static int upper(uint32_t c, uint32_t out[2])
{
	out[0] = c;
	if (c >= 'a' && c <= 'z')
		out[0] = c - 0x20;
	else if (c == 0xb5) /* micro sign -> Greek capital mu */
		out[0] = 0x39c;
	else if (c == 0xdf || c == 0x149) {
		out[0] = c == 0xdf ? 'S' : 0x2bc;
		out[1] = c == 0xdf ? 'S' : 'N';
		return 2;
	} else if (c >= 0xe0 && c <= 0xfe && c != 0xf7)
		out[0] = c - 0x20;
	else if (c == 0xff)
		out[0] = 0x178;
	else if (c >= 0x100 && c <= 0x17f)
		out[0] = upper_latin_ext_a(c);
	else if (c >= 0x370 && c <= 0x3ff)
		out[0] = upper_greek(c);
	else if (c >= 0x430 && c <= 0x44f)
		out[0] = c - 0x20;
	else if (c >= 0x450 && c <= 0x45f)
		out[0] = c - 0x50;
	return 1;
}

static int invalid_utf8(warren_task *t, size_t at)
{
	return warren_task_fail(t, "ValueError", "%s: invalid UTF-8 at byte %zu", warren_task_name(t),
				at);
}

static int text_upper(warren_task *t)
{
	const char *s;
	size_t len;
	if (warren_task_arg_str(t, 0, &s, &len) != 0)
		return -1;
	/* Worst growth is ŉ: 2 bytes in, 3 out. */
	unsigned char *out = malloc(len / 2 * 3 + 4);
	if (!out)
		return warren_task_fail(t, "MemoryError", "%s: %zu bytes", warren_task_name(t), len);
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		uint32_t cp, up[2];
		size_t step = utf8_decode((const unsigned char *)s + i, len - i, &cp);
		if (step == 0) {
			free(out);
			return invalid_utf8(t, i);
		}
		int count = upper(cp, up);
		for (int k = 0; k < count; k++)
			n += utf8_encode(up[k], out + n);
		i += step;
	}
	msgpack_packer *pk = warren_task_result(t);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, out, n);
	free(out);
	return 0;
}

/* What Python's str.split() splits on (str.isspace()). */
static bool is_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

static int text_wordcount(warren_task *t)
{
	const char *s;
	size_t len;
	if (warren_task_arg_str(t, 0, &s, &len) != 0)
		return -1;
	int64_t words = 0;
	bool in_word = false;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t step = utf8_decode((const unsigned char *)s + i, len - i, &cp);
		if (step == 0)
			return invalid_utf8(t, i);
		bool space = is_space(cp);
		if (!space && !in_word)
			words++;
		in_word = !space;
		i += step;
	}
	msgpack_pack_int64(warren_task_result(t), words);
	return 0;
}

static const warren_param one_string[] = {
	{.name = "s", .type = WARREN_TYPE_STR, .required = 1},
};
static const warren_task_schema upper_schema = {
	.params = one_string, .n_params = 1, .result = WARREN_TYPE_STR,
};
static const warren_task_schema wordcount_schema = {
	.params = one_string, .n_params = 1, .result = WARREN_TYPE_INT,
};
static const warren_task_options upper_options = {.schema = &upper_schema};
static const warren_task_options wordcount_options = {.schema = &wordcount_schema};

WARREN_PLUGIN_EXPORT int warren_plugin_init(warren_registry *reg)
{
	if (warren_register(reg, "text.upper", text_upper, &upper_options) != 0 ||
	    warren_register(reg, "text.wordcount", text_wordcount, &wordcount_options) != 0)
		return -1;
	return 0;
}
