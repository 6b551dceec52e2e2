package cmdline

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// checkedString is a string flag whose value is checked when it is set, so
// that a mistake is reported as `invalid argument "x" for "--flag"` before
// anything starts, whether it came from the command line or the environment.
type checkedString struct {
	p     *string
	typ   string
	check func(string) error
}

func (v *checkedString) String() string { return *v.p }
func (v *checkedString) Type() string   { return v.typ }
func (v *checkedString) Set(s string) error {
	if err := v.check(s); err != nil {
		return err
	}
	*v.p = s
	return nil
}

// AddrVar defines a host:port flag. An empty value is allowed (the
// configuration file or the default decides).
func AddrVar(fs *pflag.FlagSet, p *string, name, usage string) {
	fs.Var(&checkedString{p: p, typ: "host:port", check: CheckAddr}, name, usage)
}

// CheckAddr accepts "host:port" and ":port" with a port 0..65535.
func CheckAddr(s string) error {
	if s == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port: %w", unwrapAddr(err))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

func unwrapAddr(err error) error {
	if ae, ok := err.(*net.AddrError); ok {
		return fmt.Errorf("%s", ae.Err)
	}
	return err
}

// URLVar defines a URL flag with one of the given schemes.
func URLVar(fs *pflag.FlagSet, p *string, name string, schemes []string, usage string) {
	fs.Var(&checkedString{p: p, typ: "url", check: func(s string) error {
		if s == "" {
			return nil
		}
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("not a URL: %w", err)
		}
		if !slices.Contains(schemes, u.Scheme) {
			return fmt.Errorf("scheme %q: want %s", u.Scheme, strings.Join(schemes, ", "))
		}
		if u.Host == "" && u.Scheme != "unix" {
			return fmt.Errorf("no host in %q", s)
		}
		return nil
	}}, name, usage)
}

// EnumVar defines a flag that takes one of a few words.
func EnumVar(fs *pflag.FlagSet, p *string, name string, allowed []string, usage string) {
	fs.Var(&checkedString{p: p, typ: strings.Join(allowed, "|"), check: func(s string) error {
		if s == "" || slices.Contains(allowed, s) {
			return nil
		}
		return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
	}}, name, usage)
}

// FileVar defines a flag naming an existing regular file.
func FileVar(fs *pflag.FlagSet, p *string, name, usage string) {
	fs.Var(&checkedString{p: p, typ: "file", check: func(s string) error {
		if s == "" {
			return nil
		}
		st, err := os.Stat(s)
		if err != nil {
			return fmt.Errorf("cannot read it: %w", pathErr(err))
		}
		if st.IsDir() {
			return fmt.Errorf("%s is a directory, not a file", s)
		}
		return nil
	}}, name, usage)
}

// DirVar defines a flag naming an existing directory.
func DirVar(fs *pflag.FlagSet, p *string, name, usage string) {
	fs.Var(&checkedString{p: p, typ: "dir", check: func(s string) error {
		if s == "" {
			return nil
		}
		st, err := os.Stat(s)
		if err != nil {
			return fmt.Errorf("cannot read it: %w", pathErr(err))
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", s)
		}
		return nil
	}}, name, usage)
}

func pathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
