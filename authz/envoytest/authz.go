package envoytest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// headerOp is one header change decided by ext_authz, applied later to a header map.
type headerOp struct {
	action     corev3.HeaderValueOption_HeaderAppendAction
	deprecated bool // came from the deprecated `append` wrapper
	key, value string
}

// apply follows Envoy's ext_authz filter: the deprecated append=true joins values with ","
// (appendCopy), append_action APPEND_IF_EXISTS_OR_ADD adds a separate entry.
func (op headerOp) apply(h *headerMap) {
	key := strings.ToLower(op.key)
	switch op.action {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		if op.deprecated {
			h.appendJoin(key, op.value)
		} else {
			h.add(key, op.value)
		}
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !h.has(key) {
			h.add(key, op.value)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.has(key) {
			h.set(key, op.value)
		}
	default: // OVERWRITE_IF_EXISTS_OR_ADD
		h.set(key, op.value)
	}
}

// headerOps converts HeaderValueOptions the way current Envoy does (getAppendAction in
// ext_authz_grpc_impl.cc): the deprecated `append` wrapper wins when present, otherwise
// append_action is used, and its zero value means APPEND_IF_EXISTS_OR_ADD.
func headerOps(opts []*corev3.HeaderValueOption) []headerOp {
	out := make([]headerOp, 0, len(opts))
	for _, o := range opts {
		op := headerOp{key: o.GetHeader().GetKey(), value: o.GetHeader().GetValue()}
		if op.value == "" && len(o.GetHeader().GetRawValue()) > 0 {
			op.value = string(o.GetHeader().GetRawValue())
		}
		if o.GetAppend() != nil {
			op.deprecated = true
			op.action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			if o.GetAppend().GetValue() {
				op.action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
		} else {
			op.action = o.GetAppendAction()
		}
		out = append(out, op)
	}
	return out
}

// buildCheckRequest shapes the CheckRequest as Envoy's CheckRequestUtils does.
func (e *Envoy) buildCheckRequest(x *exchange) (*authv3.CheckRequest, *Response) {
	h := x.reqHeaders
	headers := make(map[string]string, len(h))
	for _, kv := range h {
		if _, seen := headers[kv.key]; seen {
			continue
		}
		if kv.key == "x-envoy-auth-partial-body" {
			continue // a client's copy is dropped (check_request_utils.cc)
		}
		headers[kv.key] = strings.Join(h.values(kv.key), ",")
	}
	path := valueOr(h, ":path", "/")
	method := valueOr(h, ":method", "GET")
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       valueOr(h, "x-request-id", ""),
		Method:   method,
		Headers:  headers,
		Path:     path, // Envoy keeps the query in path and leaves query/fragment empty.
		Host:     valueOr(h, ":authority", ""),
		Scheme:   valueOr(h, ":scheme", "http"),
		Protocol: "HTTP/1.1",
		Size:     -1,
	}
	if cl, ok := h.get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			httpReq.Size = n
		}
	} else if len(x.reqBody) == 0 {
		httpReq.Size = 0
	}
	if e.opts.WithRequestBody != nil && e.opts.WithRequestBody(method, pathOnly(path)) && len(x.reqBody) > 0 {
		body := x.reqBody
		if len(body) > e.opts.MaxRequestBytes {
			if !e.opts.AllowPartialMessage {
				// The buffer filter inside ext_authz answers 413 before any Check.
				return nil, localReply(x.resp, "ext_authz", http.StatusRequestEntityTooLarge, "Payload Too Large", "request_payload_too_large")
			}
			body = body[:e.opts.MaxRequestBytes]
			// Envoy marks every body it buffers in the CheckRequest's headers:
			// "true" when cut, "false" when whole (check_request_utils.cc,
			// setHttpRequest).
			headers["x-envoy-auth-partial-body"] = "true"
		} else {
			headers["x-envoy-auth-partial-body"] = "false"
		}
		if e.opts.PackAsBytes {
			httpReq.RawBody = append([]byte(nil), body...)
		} else {
			httpReq.Body = string(body)
		}
	}
	srcHost, srcPort := splitHostPort(e.opts.ClientAddr)
	dstHost, dstPort := splitHostPort(e.opts.ListenerAddr)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: socketAddress(srcHost, srcPort)},
		Destination:       &authv3.AttributeContext_Peer{Address: socketAddress(dstHost, dstPort)},
		Request:           &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: httpReq},
		ContextExtensions: e.opts.ContextExtensions,
		MetadataContext:   e.metadataContext(x),
	}}, nil
}

// metadataContext copies the configured namespaces of the request's dynamic
// metadata, as ext_authz's fillMetadataContext does.
func (e *Envoy) metadataContext(x *exchange) *corev3.Metadata {
	md := &corev3.Metadata{}
	for _, ns := range e.opts.MetadataContextNamespaces {
		if s, ok := x.filterMetadata[ns]; ok {
			if md.FilterMetadata == nil {
				md.FilterMetadata = map[string]*structpb.Struct{}
			}
			md.FilterMetadata[ns] = s
		}
	}
	return md
}

func pathOnly(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// runAuthz runs the ext_authz filter. done means the request was answered locally.
func (e *Envoy) runAuthz(ctx context.Context, x *exchange) (done bool, err error) {
	resp := x.resp
	creq, local := e.buildCheckRequest(x)
	if local != nil {
		resp.AuthzDenied = true
		return true, nil
	}
	resp.CheckRequest = creq
	cctx, cancel := context.WithTimeout(ctx, e.opts.AuthzTimeout)
	defer cancel()
	cresp, cerr := e.authz.Check(cctx, creq, envoyRecvLimit)
	if cerr != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return e.authzError(x, "ext_authz call failed: "+cerr.Error(), nil), nil
	}
	resp.AuthzMetadata = cresp.GetDynamicMetadata()
	switch {
	case cresp.GetStatus().GetCode() == int32(code.Code_OK):
		ok := cresp.GetOkResponse()
		for _, op := range headerOps(ok.GetHeaders()) {
			op.apply(&x.reqHeaders)
		}
		for _, name := range ok.GetHeadersToRemove() {
			name = strings.ToLower(name)
			if !modifiable(name) {
				// Envoy refuses to remove pseudo-headers and host.
				resp.event("ext_authz: ignored removal of %s", name)
				continue
			}
			x.reqHeaders.remove(name)
		}
		if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
			x.reqHeaders.set(":path", mutateQuery(valueOr(x.reqHeaders, ":path", "/"), ok.GetQueryParametersToSet(), ok.GetQueryParametersToRemove()))
		}
		x.respHeadersToAdd = headerOps(ok.GetResponseHeadersToAdd())
		// OkHttpResponse.dynamic_metadata is deprecated but still wins when present.
		md := cresp.GetDynamicMetadata()
		if ok.GetDynamicMetadata() != nil {
			md = ok.GetDynamicMetadata()
		}
		if md != nil {
			x.authzMetadata = md
		}
		return false, nil
	case cresp.GetErrorResponse() != nil:
		er := cresp.GetErrorResponse()
		return e.authzError(x, "ext_authz error_response", er), nil
	default:
		resp.AuthzDenied = true
		status := http.StatusForbidden
		var ops []headerOp
		body := ""
		if d := cresp.GetDeniedResponse(); d != nil {
			if c := int(d.GetStatus().GetCode()); c > 0 {
				status = c
			}
			ops = headerOps(d.GetHeaders())
			body = d.GetBody()
		}
		e.authzLocal(x, status, ops, body, "ext_authz_denied")
		return true, nil
	}
}

// authzError handles a failed Check: failure_mode_allow lets the request continue,
// otherwise status_on_error (403) or the error_response's status is returned.
func (e *Envoy) authzError(x *exchange, why string, er *authv3.DeniedHttpResponse) bool {
	if e.opts.FailureModeAllow {
		x.resp.event("%s; failure_mode_allow: request continues", why)
		return false
	}
	x.resp.event("%s", why)
	x.resp.AuthzDenied = true
	status := e.opts.AuthzStatusOnError
	var ops []headerOp
	body := ""
	if er != nil {
		if c := int(er.GetStatus().GetCode()); c > 0 {
			status = c
		}
		ops = headerOps(er.GetHeaders())
		body = er.GetBody()
	}
	e.authzLocal(x, status, ops, body, "ext_authz_error")
	return true
}

func (e *Envoy) authzLocal(x *exchange, status int, ops []headerOp, body, details string) {
	hm := headerMap{{":status", strconv.Itoa(status)}}
	if body != "" {
		hm.add("content-type", "text/plain")
	}
	for _, op := range ops {
		op.apply(&hm)
	}
	hm.set("content-length", strconv.Itoa(len(body)))
	x.resp.Status = status
	x.resp.Header = hm.httpHeader()
	x.resp.Body = []byte(body)
	x.resp.LocalReply = "ext_authz"
	x.resp.Details = details
}

// mutateQuery applies query_parameters_to_set / _to_remove to a :path value.
func mutateQuery(path string, set []*corev3.QueryParameter, remove []string) string {
	p, q, _ := strings.Cut(path, "?")
	vals, err := url.ParseQuery(q)
	if err != nil {
		vals = url.Values{}
	}
	for _, k := range remove {
		vals.Del(k)
	}
	for _, kv := range set {
		vals.Set(kv.GetKey(), kv.GetValue())
	}
	if enc := vals.Encode(); enc != "" {
		return p + "?" + enc
	}
	return p
}

// CheckRequest returns the CheckRequest this emulator would send for req, without sending
// it; load generators use it to replay Envoy-shaped checks.
func (e *Envoy) CheckRequest(req *http.Request) (*authv3.CheckRequest, error) {
	x, err := e.newExchange(req)
	if err != nil {
		return nil, err
	}
	creq, local := e.buildCheckRequest(x)
	if local != nil {
		return nil, fmt.Errorf("envoytest: %s %s: ext_authz would answer %d locally", req.Method, req.URL, local.Status)
	}
	return creq, nil
}
