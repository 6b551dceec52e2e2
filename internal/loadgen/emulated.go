package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"google.golang.org/grpc"

	"github.com/gdprgate/gdprgate/authz/envoytest"
)

// runEmulated is RunExtProc through the Envoy emulator: every request is a
// real HTTP exchange of envoytest's filter chain with gdprgate as both
// ext_authz and ext_proc, the answer coming from a loopback backend.
func runEmulated(ctx context.Context, cfg ExtProcConfig, conn grpc.ClientConnInterface, wl workload) (*Report, error) {
	mode := envoytest.DefaultProcessingMode()
	mode.ResponseBodyMode = cfg.BodyMode
	e := envoytest.New(envoytest.Options{
		Authz: conn, Proc: conn,
		Upstream: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if cfg.Body != nil {
				w.Header().Set("Content-Length", strconv.Itoa(len(cfg.Body)))
				_, _ = w.Write(cfg.Body)
				return
			}
			_ = cfg.Generate(w)
		}),
		ProcessingMode:       mode,
		ForwardAuthzMetadata: cfg.AuthzMetadata,
		StreamChunkSize:      cfg.ChunkBytes,
		BufferLimit:          cfg.BufferLimit,
		MessageTimeout:       wl.Timeout,
		AuthzTimeout:         wl.Timeout,
		SpuriousIsError:      true,
	})
	defer e.Close()
	return wl.run(ctx, func(ctx context.Context, _ int, i int64) (bool, int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://crm.internal"+cfg.Path, nil)
		if err != nil {
			return false, 0, fmt.Errorf("loadgen: %w", err)
		}
		req.Header.Set("x-gdpr-roles", cfg.Roles)
		req.Header.Set("x-request-id", "lg-"+strconv.FormatInt(i, 10))
		var sink io.Writer = io.Discard
		if cfg.Sink != nil {
			sink = cfg.Sink()
		}
		resp, err := e.DoTo(ctx, req, sink)
		if err != nil {
			return false, 0, err
		}
		switch {
		case resp.Reset:
			return false, resp.BodyBytes, fmt.Errorf("%w: %s", errReset, resp.Details)
		case resp.Status != http.StatusOK:
			return false, resp.BodyBytes, nil
		}
		if d, ok := sink.(interface{ Done() error }); ok {
			if err := d.Done(); err != nil {
				return false, resp.BodyBytes, err
			}
		}
		return true, resp.BodyBytes, nil
	})
}
