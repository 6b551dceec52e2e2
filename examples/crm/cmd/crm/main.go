// Command crm serves the example legacy CRM (package examples/crm) on its own,
// so that Envoy or `gdprgate proxy` can be put in front of it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve the CRM on")
	lenient := flag.Bool("lenient-ids", false, "find contacts like many real backends do: ids in any letter case, and a .json format suffix (C-2, c-2.json)")
	flag.Parse()
	var opts []crm.Option
	if *lenient {
		opts = append(opts, crm.CaseInsensitiveIDs(), crm.FormatSuffix())
	}
	if err := run(*listen, opts); err != nil {
		fmt.Fprintln(os.Stderr, "crm:", err)
		os.Exit(1)
	}
}

func run(listen string, opts []crm.Option) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{
		Addr:              listen,
		Handler:           crm.New(time.Now().UTC().Truncate(time.Second), opts...),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("example CRM listening on http://%s", listen)
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", listen, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
