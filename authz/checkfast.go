package authz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The Check fast path. A warm, memoised decision reads a handful of a
// CheckRequest's fields (the request line, host, scheme, protocol, the
// headers and the body); protobuf-go's Unmarshal builds all of it (peers,
// addresses, time, metadata) through reflection, which was the largest
// single cost of a Check. So the codec checks that the whole message is
// one protobuf-go accepts (validCheck: every field's wire type, string
// UTF-8, nesting) without building anything, reads those fields itself
// with protobuf's rules (a repeated singular field: the last wins; a
// repeated message: merged), and keeps the bytes: the rest is decoded by
// proto.Unmarshal only when something asks for it (a policy that is not
// memoised, identity from Envoy's metadata, a decision log). Anything the
// validator is not sure of (groups, packed fields, deep nesting) makes the
// codec decode the whole message with proto.Unmarshal as before, errors
// included: the fast path never reads a message differently from
// protobuf-go, and never accepts one it refuses.

// checkIn is a CheckRequest received by the codec. CheckRequest is
// embedded, so that grpc-go's own codec (a server built without Codec)
// fills it like any CheckRequest; Codec sets fast instead when the fast
// reading applies.
type checkIn struct {
	authv3.CheckRequest
	// fast: http holds the request's fields and raw the whole message;
	// CheckRequest is empty until full is called.
	fast bool
	raw  []byte
	// buf holds raw when the codec received it (a pooled buffer); release
	// returns it once the Check is answered.
	buf  mem.Buffer
	http fastHTTP
	// kv backs http.headers: a request's headers cost no allocation of
	// their own up to its size.
	kv [24]headerKV
	// answer is the answer written straight from the exchange, into
	// answerBuf while it fits (grpc-go writes it out after the handler
	// returns, while the answer keeps checkIn alive).
	answer    checkAnswer
	answerBuf [512]byte
}

// release frees the message's buffer: nothing decodes it after the Check
// is answered.
func (in *checkIn) release() {
	if in.buf != nil {
		in.buf.Free()
		in.buf, in.raw = nil, nil
	}
}

// fastHTTP is what Check reads of AttributeContext.request.http.
type fastHTTP struct {
	method, path, host, scheme, protocol string
	body, rawBody                        []byte
	headers                              reqHeaders
}

// reqHeaders are a Check request's headers: the message's map when
// protobuf-go decoded it, otherwise the pairs the fast path read, each name
// once in the order first seen (a later entry for a name replaces its
// value, as protobuf-go merges a map). A handful of pairs are searched
// faster than a map is built and hashed; past maxHeaderPairs they move into
// a map, so that many headers never cost a quadratic search.
type reqHeaders struct {
	m  map[string]string
	kv []headerKV
}

type headerKV struct{ k, v string }

// maxHeaderPairs bounds the linear search (Envoy sends 10–20 headers).
const maxHeaderPairs = 32

// headersOf wraps a decoded message's headers.
func headersOf(m map[string]string) reqHeaders { return reqHeaders{m: m} }

func (h *reqHeaders) get(name string) string {
	if h.m != nil {
		return h.m[name]
	}
	for i := range h.kv {
		if h.kv[i].k == name {
			return h.kv[i].v
		}
	}
	return ""
}

// set records a header as a map entry of the message.
func (h *reqHeaders) set(k, v string) {
	if h.m != nil {
		h.m[k] = v
		return
	}
	for i := range h.kv {
		if h.kv[i].k == k {
			h.kv[i].v = v
			return
		}
	}
	if len(h.kv) < maxHeaderPairs {
		h.kv = append(h.kv, headerKV{k, v})
		return
	}
	h.m = h.all()
	h.m[k] = v
	h.kv = nil
}

// all returns the headers as a map (a new one unless the message's).
func (h *reqHeaders) all() map[string]string {
	if h.m != nil {
		return h.m
	}
	m := make(map[string]string, len(h.kv))
	for _, kv := range h.kv {
		m[kv.k] = kv.v
	}
	return m
}

// names yields every header name once.
func (h *reqHeaders) names(yield func(string) bool) {
	if h.m != nil {
		for k := range h.m {
			if !yield(k) {
				return
			}
		}
		return
	}
	for _, kv := range h.kv {
		if !yield(kv.k) {
			return
		}
	}
}

// full decodes the whole message (once) and returns it.
func (in *checkIn) full() (*authv3.CheckRequest, error) {
	if in.fast {
		if in.raw == nil {
			return nil, errors.New("check request: read after its answer")
		}
		if err := proto.Unmarshal(in.raw, &in.CheckRequest); err != nil {
			return nil, fmt.Errorf("check request: %w", err)
		}
		in.fast = false
		in.release()
		in.raw = nil
	}
	return &in.CheckRequest, nil
}

// decodeCheckIn reads b into in: the fast reading when validCheck is sure
// of b, decodeCheckRequest (proto.Unmarshal's result and errors) otherwise.
// The fast reading keeps b (for full) until in.release: the caller does
// not reuse it before.
func decodeCheckIn(b []byte, in *checkIn) error {
	if validMessage(b, checkRequestTable(), 0) {
		in.fast, in.raw = true, b
		in.http = fastHTTP{headers: reqHeaders{kv: in.kv[:0]}}
		readCheckPath(b, 0, &in.http)
		return nil
	}
	return decodeCheckRequest(b, &in.CheckRequest)
}

var checkRequestDesc = (&authv3.CheckRequest{}).ProtoReflect().Descriptor()

// maxValidDepth bounds validMessage's recursion; deeper messages go to
// proto.Unmarshal (whose own limit is 10,000).
const maxValidDepth = 32

// msgTable is what validMessage needs of a message's fields, found by
// number without protoreflect's interface calls and map lookups (those
// were a third of the fast reading's time).
type msgTable struct {
	dense  []fieldInfo // by number below len(dense)
	sparse map[protowire.Number]*fieldInfo
}

// fieldInfo is one declared field (known false: no field of that number).
type fieldInfo struct {
	known bool
	kind  protoreflect.Kind
	list  bool
	sub   *msgTable // message and group fields, map entries
}

// maxDenseField bounds the directly indexed field numbers of a table.
const maxDenseField = 64

// checkRequestTable is checkRequestDesc's table, built once.
var checkRequestTable = sync.OnceValue(func() *msgTable {
	return newMsgTable(checkRequestDesc, map[protoreflect.FullName]*msgTable{})
})

// newMsgTable builds md's table and those of the messages it holds;
// built memoises them (messages nest themselves: Struct, Value).
func newMsgTable(md protoreflect.MessageDescriptor, built map[protoreflect.FullName]*msgTable) *msgTable {
	if t, ok := built[md.FullName()]; ok {
		return t
	}
	t := &msgTable{}
	built[md.FullName()] = t
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		fi := fieldInfo{known: true, kind: fd.Kind(), list: fd.IsList()}
		if fd.Message() != nil {
			fi.sub = newMsgTable(fd.Message(), built)
		}
		if n := fd.Number(); n < maxDenseField {
			if int(n) >= len(t.dense) {
				t.dense = append(t.dense, make([]fieldInfo, int(n)+1-len(t.dense))...)
			}
			t.dense[n] = fi
		} else {
			if t.sparse == nil {
				t.sparse = map[protowire.Number]*fieldInfo{}
			}
			t.sparse[n] = &fi
		}
	}
	return t
}

// field returns the declared field num, or nil.
func (t *msgTable) field(num protowire.Number) *fieldInfo {
	if num >= 0 && int(num) < len(t.dense) {
		if f := &t.dense[num]; f.known {
			return f
		}
		return nil
	}
	return t.sparse[num]
}

// validMessage reports whether proto.Unmarshal would accept b as a message
// of t's type. False means "not sure", not "invalid": the caller lets
// proto.Unmarshal decide. It is stricter than protobuf-go where that is
// simpler (every string field's UTF-8 is checked, any group or packed
// field is refused), never laxer.
func validMessage(b []byte, t *msgTable, depth int) bool {
	if depth > maxValidDepth {
		return false
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return false
		}
		b = b[n:]
		if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
			return false
		}
		fd := t.field(num)
		if fd != nil && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			switch k := fd.kind; {
			case k == protoreflect.MessageKind:
				// Maps too: an entry is a message of its key and value.
				if !validMessage(v, fd.sub, depth+1) {
					return false
				}
			case k == protoreflect.StringKind:
				if !utf8.Valid(v) {
					return false
				}
			case k == protoreflect.BytesKind:
			case fd.list:
				// A packed repeated scalar.
				return false
			}
			// A scalar field sent as bytes is an unknown field to
			// protobuf-go: skipped, as here.
			b = b[m:]
			continue
		}
		if fd != nil && fd.kind == protoreflect.GroupKind {
			return false
		}
		// Scalars (any value of the right wire type is valid) and unknown
		// fields: only their framing matters.
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return true
}

// checkHTTPPath leads from a CheckRequest to its HttpRequest: attributes
// (1), AttributeContext.request (4), Request.http (2).
var checkHTTPPath = [...]protowire.Number{1, 4, 2}

// HttpRequest's fields read by the fast path (attribute_context.proto).
const (
	fieldHTTPMethod   = 2
	fieldHTTPPath     = 4
	fieldHTTPHost     = 5
	fieldHTTPScheme   = 6
	fieldHTTPProtocol = 10
	fieldHTTPBody     = 11
	fieldHTTPRawBody  = 12
)

// readCheckPath reads the HttpRequest fields of b (validated by
// validMessage) into h as proto.Unmarshal merges them: every occurrence of
// a message on the path is read in order, a later scalar replacing an
// earlier one, a later map entry an earlier one with its key. A field of
// another wire type than its declared one is an unknown field to
// protobuf-go, and skipped here.
func readCheckPath(b []byte, depth int, h *fastHTTP) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if typ != protowire.BytesType {
			b = b[m:]
			continue
		}
		v, _ := protowire.ConsumeBytes(b)
		b = b[m:]
		if depth < len(checkHTTPPath) {
			if num == checkHTTPPath[depth] {
				readCheckPath(v, depth+1, h)
			}
			continue
		}
		switch num {
		case fieldHTTPMethod:
			h.method = intern(v)
		case fieldHTTPHeaders:
			readHeaderEntry(v, &h.headers)
		case fieldHTTPPath:
			// Envoy sends the headers first: :path and :authority
			// usually hold these very strings.
			h.path = sameAs(v, h.headers.get(":path"))
		case fieldHTTPHost:
			h.host = sameAs(v, h.headers.get(":authority"))
		case fieldHTTPScheme:
			h.scheme = intern(v)
		case fieldHTTPProtocol:
			h.protocol = intern(v)
		case fieldHTTPBody:
			h.body = bytes.Clone(v)
		case fieldHTTPRawBody:
			h.rawBody = bytes.Clone(v)
		}
	}
}

// readHeaderEntry reads a validated map<string, string> entry as
// protobuf-go does: key (1) and value (2) default to "", a later one
// replaces an earlier one, fields of other numbers or wire types are
// skipped.
func readHeaderEntry(b []byte, headers *reqHeaders) {
	var key, val []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if typ == protowire.BytesType && (num == 1 || num == 2) {
			v, _ := protowire.ConsumeBytes(b)
			if num == 1 {
				key = v
			} else {
				val = v
			}
		}
		b = b[m:]
	}
	headers.set(intern(key), internValue(val))
}

// sameAs is string(b), s itself when it holds those bytes.
func sameAs(b []byte, s string) string {
	if string(b) == s {
		return s
	}
	return string(b)
}

// interned are strings every request repeats: header names, methods,
// schemes, protocols, common header values. Reading one of them allocates nothing; the set is
// fixed, so it does not grow with what clients send.
var interned = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		":authority", ":method", ":path", ":scheme", "accept", "accept-encoding", "accept-language",
		"authorization", "cache-control", "connection", "content-length", "content-type", "cookie",
		"host", "origin", "referer", "traceparent", "tracestate", "user-agent",
		"x-envoy-auth-partial-body", "x-envoy-expected-rq-timeout-ms", "x-envoy-internal",
		"x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
		"x-gdpr-caller", "x-gdpr-mode", "x-gdpr-project", "x-gdpr-roles", "x-http-method-override",
		"x-request-id", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
		"http", "https", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3",
		// Common header values.
		"", "0", "true", "false", "*/*", "gzip", "application/json", "application/json; charset=utf-8",
		"keep-alive", "no-cache", "gzip, deflate", "gzip, deflate, br",
	} {
		m[s] = s
	}
	return m
}()

// internValue is intern for a header value: only short values are looked
// up (a long one is hardly one of them, and would be hashed for nothing).
func internValue(b []byte) string {
	if len(b) > 32 {
		return string(b)
	}
	return intern(b)
}

// intern is string(b), shared when it is one of the interned strings.
func intern(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

// checkDesc is Authorization's service description with a handler that
// decodes into checkIn (the generated one decodes into a fresh
// CheckRequest, always whole).
var checkDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: authv3.Authorization_ServiceDesc.HandlerType,
	Methods: []grpc.MethodDesc{{
		MethodName: "Check",
		Handler:    checkHandler,
	}},
	Streams:  []grpc.StreamDesc{},
	Metadata: authv3.Authorization_ServiceDesc.Metadata,
}

func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(checkIn)
	if err := dec(in); err != nil {
		return nil, err
	}
	defer in.release()
	s := srv.(*Server)
	if interceptor == nil {
		return s.checkIn(ctx, in)
	}
	// Interceptors are given the CheckRequest they expect.
	req, err := in.full()
	if err != nil {
		return nil, err
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return s.Check(ctx, req.(*authv3.CheckRequest))
	})
}
