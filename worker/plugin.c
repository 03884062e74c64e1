/* worker/plugin.c - loading a task plugin (.so) into the registry.
 *
 * The checks run in the order that gives the most useful message: the file
 * exists, it is a shared object, it is a warren plugin (the ABI symbol), it
 * speaks our ABI, it has an init - and only then does any of its code run.
 * RTLD_NOW makes an unresolved symbol a load-time error rather than a crash
 * in the middle of a task; RTLD_LOCAL keeps one plugin's symbols from
 * satisfying another's, so plugins cannot depend on load order.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "worker.h"

typedef int (*plugin_init_fn)(warren_registry *);

/* dlsym() returns void *; ISO C has no cast from it to a function pointer,
 * POSIX guarantees the representation, so copy the bits. */
static plugin_init_fn to_init_fn(void *sym)
{
	plugin_init_fn fn;
	memcpy(&fn, &sym, sizeof fn);
	return fn;
}

/* A stat() first, so a typo in --plugin reads "No such file or directory"
 * rather than dlopen's longer text, and a path without a slash is never
 * searched for along LD_LIBRARY_PATH (it means ./name, as a file would). */
static int check_file(const char *path, warren_error *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return warren_error_set(err, WARREN_EPLUGIN, "plugin '%s': cannot open: %s", path,
					strerror(errno));
	if (!S_ISREG(st.st_mode))
		return warren_error_set(err, WARREN_EPLUGIN, "plugin '%s': not a regular file", path);
	return 0;
}

static void *open_plugin(const char *path, warren_error *err)
{
	char local[4096];
	const char *file = path;
	if (!strchr(path, '/')) {
		int n = snprintf(local, sizeof local, "./%s", path);
		if (n < 0 || (size_t)n >= sizeof local) {
			warren_error_set(err, WARREN_EPLUGIN, "plugin '%s': path too long", path);
			return NULL;
		}
		file = local;
	}
	dlerror(); /* clear a stale message */
	void *handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		const char *why = dlerror();
		warren_error_set(err, WARREN_EPLUGIN, "plugin '%s': not a loadable shared object: %s",
				 path, why ? why : "unknown dlopen error");
	}
	return handle;
}

static int check_abi(const char *path, void *handle, warren_error *err)
{
	const int *abi = dlsym(handle, "warren_plugin_abi");
	if (!abi)
		return warren_error_set(err, WARREN_EPLUGIN,
					"plugin '%s': no 'warren_plugin_abi' symbol: not a warren plugin",
					path);
	if (*abi != WARREN_PLUGIN_ABI)
		return warren_error_set(err, WARREN_EPLUGIN,
					"plugin '%s': plugin ABI %d, this worker speaks %d", path, *abi,
					WARREN_PLUGIN_ABI);
	return 0;
}

int plugin_load(registry *reg, const char *path, warren_error *err)
{
	int rc = check_file(path, err);
	if (rc != 0)
		return rc;
	void *handle = open_plugin(path, err);
	if (!handle)
		return WARREN_EPLUGIN;
	rc = check_abi(path, handle, err);
	if (rc != 0)
		goto out_close;
	void *init = dlsym(handle, "warren_plugin_init");
	if (!init) {
		rc = warren_error_set(err, WARREN_EPLUGIN, "plugin '%s': no 'warren_plugin_init' symbol",
				      path);
		goto out_close;
	}
	rc = registry_adopt_plugin(reg, path, handle, to_init_fn(init), err);
	if (rc != 0)
		goto out_close;
	return 0;
out_close:
	dlclose(handle);
	return rc;
}
