package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/gdprgate/gdprgate/internal/version"
)

var errNotBuilt = errors.New("not yet built")

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error { return errNotBuilt }
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error { return errNotBuilt }
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errNotBuilt
}
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error { return errNotBuilt }

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "gdprgate demo: will start the example CRM (examples/crm), the proxy in front of it,")
	fmt.Fprintln(stdout, "the admin API and an in-memory store loaded with the reference scenario.")
	return errNotBuilt
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "gdprgate", version.Version)
	return nil
}
