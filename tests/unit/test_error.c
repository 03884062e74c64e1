/* tests/unit/test_error.c - warren_error: every code has a name, first failure wins. */
#include <criterion/criterion.h>
#include <string.h>

#include "warren/error.h"

Test(error, every_code_has_a_name)
{
	for (int code = 0; code >= WARREN_ECODE_MIN; code--)
		cr_expect_str_neq(warren_strerror(code), "unknown error", "code %d has no name", code);
	cr_expect_str_eq(warren_strerror(1), "unknown error");
	cr_expect_str_eq(warren_strerror(WARREN_ECODE_MIN - 1), "unknown error");
}

Test(error, first_failure_wins)
{
	warren_error err = {0};
	int rc = warren_error_set(&err, WARREN_EDECODE, "body: truncated at byte %d", 17);
	cr_assert_eq(rc, WARREN_EDECODE);
	warren_error_set(&err, WARREN_EIO, "outer context");
	cr_expect_eq(err.code, WARREN_EDECODE);
	cr_expect_str_eq(err.msg, "body: truncated at byte 17");
	warren_error_clear(&err);
	cr_expect_eq(err.code, 0);
	cr_expect_str_eq(err.msg, "");
}

Test(error, null_error_is_allowed)
{
	cr_expect_eq(warren_error_set(NULL, WARREN_ENOMEM, "x"), WARREN_ENOMEM);
}

Test(error, long_messages_are_truncated_not_overflowed)
{
	warren_error err = {0};
	char big[1000];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	warren_error_set(&err, WARREN_EINVAL, "%s", big);
	cr_expect_eq(strlen(err.msg), WARREN_ERROR_MSG_MAX - 1);
}
