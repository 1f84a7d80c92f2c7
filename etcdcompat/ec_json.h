/*
 * ec_json: etcd's protobuf messages as the JSON its HTTP gateway speaks.
 *
 * etcd 3.4 serves its gRPC API as JSON over HTTP/1.1 through grpc-gateway v1,
 * whose default marshaler is golang/protobuf's jsonpb with OrigName on and
 * EmitDefaults off. This module is that mapping over protobuf-c's descriptors,
 * so any message of proto/ (etcdserverpb, mvccpb, authpb) converts both ways
 * with no per-message code:
 *
 *   output: fields under their .proto names (snake_case), in descriptor order;
 *     fields at their zero value (0, false, "", empty bytes, enum 0, an empty
 *     repeated, an absent message) left out; int64/uint64/sint64/fixed64/
 *     sfixed64 as decimal strings ("revision":"5"), 32-bit integers as
 *     numbers, bool as true/false, bytes as standard base64 with padding, enums
 *     by value name ("PUT"), a oneof by the name of its set member, repeated as
 *     arrays; compact (no spaces), as Go's json.Marshal writes.
 *   input: jsonpb's Unmarshaler: a field by its .proto name or its lowerCamel
 *     JSON name; 64-bit integers as a number or a string; 32-bit as a number
 *     (or a string holding one); enums by name or number; bytes in standard or
 *     URL-safe base64, padded or not; null for any field means "not set";
 *     an unknown field is skipped (the gateway's AllowUnknownFields); a wrong
 *     type or bad base64 is an error. Empty text is the error "EOF" (the
 *     gateway reads an empty body as {}: its caller's choice).
 *
 * Thread-safe: no state. Messages are protobuf-c's (ProtobufCMessage).
 */
#ifndef METASTORE_EC_JSON_H
#define METASTORE_EC_JSON_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/*
 * ec_json_decode - parse @len bytes of JSON text at @text (one JSON object)
 * into a new message of type @desc.
 * Returns EC_OK and sets *@out (the caller frees it with
 * protobuf_c_message_free_unpacked(*@out, NULL)); or EC_BAD_REQUEST with *@out
 * NULL and a reason in @err (@errlen bytes, always terminated; may be NULL)
 * for text that is not such an object, a value of the wrong type, bad base64 or an unknown enum name; or EC_NOMEM.
 */
int ec_json_decode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                   ProtobufCMessage **out, char *err, size_t errlen);

/*
 * ec_json_encode - @msg as JSON text (the output rules above), malloc'd and
 * NUL-terminated; *@len (when not NULL) is its length without the NUL. The
 * caller frees it with free(). Returns NULL when out of memory.
 */
char *ec_json_encode(const ProtobufCMessage *msg, size_t *len);

#endif
