package cmdline

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestCheckAddrAcceptsHostPortOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:9191": true, ":80": true, "[::1]:0": true, "gdprgate:9191": true,
		"localhost": false, "127.0.0.1:http": false, "127.0.0.1:70000": false, "::1:80": false,
	} {
		if err := CheckAddr(addr); (err == nil) != ok {
			t.Errorf("CheckAddr(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestEveryFlagHasItsVariableUnlessOptedOut(t *testing.T) {
	var name string
	var confirm bool
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().StringVar(&name, "admin-url", "", "")
	cmd.Flags().BoolVar(&confirm, "confirm", false, "")
	NoEnv(cmd.Flags(), "confirm")
	t.Setenv("GDPRGATE_ADMIN_URL", "http://a")
	t.Setenv("GDPRGATE_CONFIRM", "true")
	var out bytes.Buffer
	if err := Run(context.Background(), cmd, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	if name != "http://a" || confirm {
		t.Fatalf("admin-url %q (want the variable's), confirm %v (want no variable)", name, confirm)
	}
}

func TestUsageErrorsAreMarked(t *testing.T) {
	cmd := &cobra.Command{Use: "x", Args: Args(1, 1, "FILE"), RunE: func(*cobra.Command, []string) error { return nil }}
	var out bytes.Buffer
	err := Run(context.Background(), cmd, nil, &out, &out)
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "usage: x FILE") {
		t.Fatalf("%v", err)
	}
	if code := Execute(context.Background(), cmd, []string{"a", "b"}, &out, &out); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if code := Execute(context.Background(), cmd, []string{"-h"}, &out, &out); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
}
