/*
 * srv_yaml: one YAML file loaded into a tree of nodes (on Debian's libyaml), with
 * each plain scalar resolved the way etcd's YAML reader (gopkg.in/yaml.v2, YAML
 * 1.1) types it: null ("", "~", "null"), boolean ("true", "yes", "on", "n", ...),
 * integer ("42", "0x2a", "0o52", "052", "1_000", "-3"), float ("1.5", ".inf"),
 * else a string. Quoted and block scalars are always strings. srv_config reads
 * etcd's configuration file through it (srv_config.h); nothing here knows the
 * keys.
 *
 * Nodes are small integers: 0 is "no node", others are valid until
 * srv_yaml_free(). Aliases (*name) are the node their anchor names.
 */
#ifndef METASTORE_SRV_YAML_H
#define METASTORE_SRV_YAML_H

#include <stddef.h>

typedef enum srv_yaml_kind {
	SRV_YAML_NONE, /* node 0, or not a node of this document */
	SRV_YAML_NULL,
	SRV_YAML_BOOL,  /* text: "true" or "false" */
	SRV_YAML_INT,   /* text: decimal, e.g. "-3", "42" (fits int64 or uint64) */
	SRV_YAML_FLOAT, /* text: as written */
	SRV_YAML_STR,   /* text: the string */
	SRV_YAML_SEQ,   /* items: srv_yaml_len / srv_yaml_item */
	SRV_YAML_MAP,   /* pairs: srv_yaml_len / srv_yaml_key / srv_yaml_value */
} srv_yaml_kind;

typedef struct srv_yaml srv_yaml;

/*
 * srv_yaml_load - read and parse the first document of file @path. On success
 * stores a document the caller frees with srv_yaml_free() in *@out and returns
 * 0. Returns -1 with a one-line reason in @err: "open PATH: No such file or
 * directory", "PATH: line 7: mapping values are not allowed in this context"
 * (libyaml's problem and, where it has one, its line), or "out of memory".
 */
int srv_yaml_load(const char *path, srv_yaml **out, char *err, size_t errlen);

void srv_yaml_free(srv_yaml *y);

/* srv_yaml_root - the document's top node; 0 for an empty document. */
int srv_yaml_root(const srv_yaml *y);

srv_yaml_kind srv_yaml_kind_of(const srv_yaml *y, int node);

/* srv_yaml_text - a scalar's resolved text (see srv_yaml_kind); "" for other
 * kinds. Owned by @y. */
const char *srv_yaml_text(const srv_yaml *y, int node);

/* srv_yaml_line - the 1-based line where @node starts; 0 for no node. */
unsigned long srv_yaml_line(const srv_yaml *y, int node);

/* srv_yaml_len - pairs of a mapping, items of a sequence; 0 otherwise. */
size_t srv_yaml_len(const srv_yaml *y, int node);

/* The @i-th key and value of mapping @node, the @i-th item of sequence @node
 * (0 when out of range or of another kind). */
int srv_yaml_key(const srv_yaml *y, int node, size_t i);
int srv_yaml_value(const srv_yaml *y, int node, size_t i);
int srv_yaml_item(const srv_yaml *y, int node, size_t i);

/* srv_yaml_kind_name - "a string", "a number", "a boolean", "a list", "a
 * mapping", "null": for messages. */
const char *srv_yaml_kind_name(srv_yaml_kind k);

#endif
