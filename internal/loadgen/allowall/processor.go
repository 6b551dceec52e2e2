package allowall

import (
	"errors"
	"io"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
)

// Processor is the baseline ext_proc server: it asks for the response body
// as gdprgate does for a mapped route (BUFFERED when Envoy is configured
// not to send it, the configured mode otherwise) and
// changes nothing, so what it costs per exchange is the floor of gRPC
// streaming, protobuf and the Go runtime. In FULL_DUPLEX_STREAMED mode it
// echoes every chunk, which is what changing nothing means there.
type Processor struct {
	extprocv3.UnimplementedExternalProcessorServer
}

var (
	requestHeaders = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
		ModeOverride: &filterv3.ProcessingMode{ResponseHeaderMode: filterv3.ProcessingMode_SEND,
			ResponseBodyMode: filterv3.ProcessingMode_BUFFERED},
	}
	requestHeadersNoOverride = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
	}
	responseHeaders = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}},
	}
	responseBody = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}},
	}
	requestBody = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}},
	}
	responseTrailers = &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}},
	}
)

// Process answers every phase without a change.
func (Processor) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	duplex, override := false, false
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil
		}
		if pc := req.GetProtocolConfig(); pc != nil {
			duplex = pc.GetResponseBodyMode() == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
			// Like gdprgate, ask for the body when Envoy does not send it
			// by default; otherwise keep the configured mode.
			override = pc.GetResponseBodyMode() == filterv3.ProcessingMode_NONE
		}
		var resp *extprocv3.ProcessingResponse
		switch r := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp = requestHeadersNoOverride
			if override {
				resp = requestHeaders
			}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = responseHeaders
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = responseBody
			if duplex {
				b := r.ResponseBody
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
					Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
						StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b.GetBody(), EndOfStream: b.GetEndOfStream()},
					}}},
				}}}
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = requestBody
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = responseTrailers
		default:
			continue
		}
		if err := srv.Send(resp); err != nil {
			return nil
		}
	}
}

// RegisterProcessor adds the baseline ext_proc service to s.
func RegisterProcessor(s *grpc.Server) {
	extprocv3.RegisterExternalProcessorServer(s, Processor{})
}
