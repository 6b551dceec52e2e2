// Package envoytest emulates the Envoy side of the ext_authz v3 and ext_proc v3 gRPC
// protocols so gdprgate's servers can be tested without an Envoy binary.
//
// An Envoy value stands for one HTTP listener whose filter chain is
// ext_authz → ext_proc → router. Do sends one HTTP request through it: a CheckRequest is
// built and its answer applied, one Process stream is opened for the request, the phases
// are sent one message at a time, the (mutated) request goes to the upstream over real
// HTTP/1.1, and the response comes back through ext_proc and ext_authz's
// response_headers_to_add. The Response says what the client got and how (Phases,
// LocalReply, Details, Events).
//
// # Behaviour emulated, and where it comes from
//
// Read from Envoy's sources (envoyproxy/envoy, source/extensions/filters/http/ext_proc/
// processor_state.cc, ext_proc.cc, mutation_utils.cc,
// source/extensions/filters/common/mutation_rules/mutation_rules.cc and
// source/extensions/filters/common/ext_authz/ext_authz_grpc_impl.cc) and the filter docs:
//
//   - ext_authz: a non-OK status is a denial; denied_response.status 0 means 403. A failed
//     or timed-out Check (default timeout 200ms) or an error_response answers
//     status_on_error (403) unless failure_mode_allow. OkHttpResponse headers follow
//     getAppendAction: the deprecated `append` wrapper wins (true = append joined with ",",
//     false = overwrite); otherwise append_action, whose zero value APPEND_IF_EXISTS_OR_ADD
//     adds a separate entry. headers_to_remove cannot remove host or ":" headers.
//     OkHttpResponse.dynamic_metadata (deprecated) overrides CheckResponse.dynamic_metadata.
//     With with_request_body, every buffered body is marked in the CheckRequest's headers
//     with x-envoy-auth-partial-body "true" (cut to max_request_bytes) or "false", and a
//     client's own copy of that header is dropped (check_request_utils.cc, setHttpRequest).
//
//   - ext_proc ordering: a response of the wrong type for the pending phase is a
//     *spurious message*. Envoy does not fail the request for it: it logs, closes the
//     stream, marks processing complete and lets the request and response continue
//     UNPROCESSED (ext_proc.cc, onReceiveMessage, FailedPrecondition branch). For gdprgate
//     that means an unredacted body; Options.SpuriousIsError turns it into a 500 for tests.
//     A processor that closes the stream (io.EOF) early is treated the same way
//     (onGrpcClose). A gRPC error gives 500 (status_on_error), a message timeout gives 504
//     "ext_proc_error_per-message_timeout_exceeded" (older Envoy releases used 500);
//     failure_mode_allow turns both into "continue unprocessed".
//
//   - mode_override (Filter::onReceiveMessage) is honoured only in answers to
//     request_headers or response_headers, only with allow_mode_override, never when the
//     filter's configured mode streams a body FULL_DUPLEX_STREAMED, and only if it matches
//     one of allowed_override_modes when those are set. It is merged onto the FILTER's
//     configured mode (effectiveModeOverride: header and trailer modes left DEFAULT keep the
//     configured ones; both body modes always replace), so an override undoes a route's
//     body mode unless it repeats it. A route's ExtProcPerRoute processing_mode
//     (Options.RouteProcessingMode) replaces the filter's for that request
//     (mergePerRouteConfig) and is what protocol_config reports.
//
//   - STREAMED response bodies (streamed.go; ext_proc.cc handleDataStreamedModeBase,
//     processor_state.cc handleHeadersResponse, handleStreamedBodyResponse): the headers
//     answer releases the response headers downstream, without content-length
//     (shouldRemoveContentLength); the body then goes to the processor in chunks of
//     Options.StreamChunkSize as they arrive, pipelined (Envoy does not wait for answers),
//     the last one with end_of_stream. Each body answer replaces the OLDEST pending chunk with
//     its body_mutation (no mutation passes it, body may be empty or larger, clear_body drops
//     it); its header_mutation is ignored (the headers are gone). Over BufferLimit bytes of
//     unanswered chunks Envoy raises a watermark and stops reading the backend until the
//     queue is under half of it (queueOverHighLimit/queueBelowLowLimit). The message timer
//     is armed at each send and stopped at each answer (onStartProcessorCall,
//     onFinishProcessorCall). A streamed_response in STREAMED mode, an answer with no chunk
//     pending or an answer of another type is spurious.
//
//   - FULL_DUPLEX_STREAMED response bodies (handleDataFullDuplexStreamedMode,
//     handleDuplexStreamedBodyResponse): chunks go to the processor as they arrive even
//     while the headers answer is awaited; Envoy keeps no copy, has no watermark and no
//     message timer. The headers answer must come first (a body answer before it is
//     spurious) and releases the headers; until then the processor can still answer with
//     an ImmediateResponse, which is a real local reply. Body answers must carry
//     body_mutation.streamed_response (a plain body_mutation is spurious); their bytes go
//     downstream as they come, any number of them, until one has end_of_stream. Once a body
//     chunk was received failure_mode_allow no longer applies (Filter::failureModeAllow).
//
//   - A failure after the response headers went downstream (ImmediateResponse, gRPC
//     error, message timeout, fail-closed spurious message, upstream reset) cannot be a
//     local reply: FilterManager::sendLocalReply resets the stream ("Prior headers have
//     already been sent"). Response.Reset is set; Status and Header are what the client got,
//     Body is what it had received before the reset. The fail-open paths (failure_mode_allow,
//     a processor closing the stream, a spurious message by default) inject the chunks
//     Envoy still holds as they came and let the rest of the body through UNPROCESSED
//     (clearAsyncState); in FULL_DUPLEX_STREAMED the chunks already sent are lost.
//
//   - Header mutations (MutationUtils::applyHeaderMutations + the mutation Checker): removals
//     first, then sets. With default rules, changes to host, :authority, :method, :scheme,
//     x-envoy-*, appends to ":" headers, removal of host or any ":" header, and :status below
//     200 are silently IGNORED (Response.Events records them); DisallowIsError makes them a
//     500. Setting both value and raw_value, or invalid characters, is a 500. Envoy reads
//     raw_value only: a processor that fills `value` sets an empty header (recorded as an
//     event). For ext_proc append_action 0 falls back to the `append` wrapper (default
//     overwrite).
//
//   - Content-Length (the question that motivated this package): in BUFFERED mode with
//     headers sent, Envoy keeps the upstream content-length while it holds the headers. When
//     a body response carries a body_mutation, its header_mutation is applied first, then if
//     a content-length header is still present and differs from len(body_mutation.body)
//     Envoy fails the request: 500, "mismatch between content length and the length of the
//     mutated body" (processor_state.cc, handleBodyResponse; clear_body counts as length 0).
//     A processor must therefore remove content-length (in the headers or the body response)
//     or set it to the new length. Envoy itself removes content-length only for
//     CONTINUE_AND_REPLACE with a body_mutation, and for STREAMED, BUFFERED_PARTIAL,
//     FULL_DUPLEX_STREAMED or BUFFERED-without-headers (shouldRemoveContentLength).
//
//   - CONTINUE_AND_REPLACE in a headers response replaces the body (if body_mutation is set)
//     and stops all further processing of that message (body mode becomes NONE).
//
//   - A body larger than the buffer limit (per_connection_buffer_limit_bytes, 1 MiB) in
//     BUFFERED mode gets 413 on the request path and 500 on the response path (the HTTP
//     connection manager's buffer-overflow replies).
//
//   - Message sizes: Envoy's gRPC client receives messages of any size
//     (config/core/v3/grpc_service.proto, EnvoyGrpc.max_receive_message_length: 0 means
//     unlimited), so a processor's answer is never refused for its size; a body larger
//     than the processor's receive limit fails the stream (RESOURCE_EXHAUSTED), which
//     Envoy treats as any gRPC error.
//
//   - ImmediateResponse: status below 200 or unset becomes 200; headers are mutated through
//     the same checker; details are kept in Response.Details.
//
//   - The first ProcessingRequest carries protocol_config (the body modes); with
//     ForwardAuthzMetadata every request carries metadata_context with the request's dynamic
//     metadata under "envoy.filters.http.ext_authz". Header values go in raw_value. That
//     namespace is not ext_authz's alone: filters before it may write there
//     (Options.FilterMetadata), and ext_authz's answer is merged in, key by key
//     (StreamInfoImpl::setDynamicMetadata is a Struct MergeFrom), so a key ext_authz does not
//     write survives, and with no Check (no ext_authz filter, or a failure let through) what
//     the earlier filters wrote is all there is (ext_proc.cc, addDynamicMetadata).
//
//   - Response trailers (ext_proc.cc onTrailers, processor_state.cc finalizeBodyResponse,
//     handleTrailersResponse): the backend's trailers end its body, so no body message
//     says end_of_stream when trailers follow — a BUFFERED body is sent whole without it.
//     With response_trailer_mode SEND (SKIP is the default for trailers) they go to the
//     processor once every body answer came back (FULL_DUPLEX_STREAMED: right behind the
//     last chunk, and their answer ends the response), also when no body was processed;
//     the answer's header_mutation applies under the headers' rules; an immediate
//     response or a failure after the headers went out resets the stream. An answer
//     without trailers gets no trailers message. Response.Trailer is what the client got.
//     A processor ending a FULL_DUPLEX_STREAMED body with end_of_stream while the trailers
//     are with it drops them (an event; not read from Envoy's sources).
//
// Not emulated: request trailers, streamed REQUEST bodies (a STREAMED or FULL_DUPLEX_STREAMED
// request body is sent as one chunk), BUFFERED_PARTIAL (one chunk),
// send_body_without_waiting_for_header_response, override_message_timeout, route-cache
// re-routing, the HTTP (non-gRPC) ext_authz service, async/observability mode, per-route
// overrides other than processing_mode. DoTo writes the downstream body to a writer for
// bodies too big to hold.
package envoytest
