// Command gdprgate-image builds gdprgate's container images without a
// Docker daemon (`make image`): it compiles static binaries for each
// platform, puts them on scratch with a non-root user and CA certificates
// (internal/ociimage), and writes an OCI image layout and a tarball that
// `docker load` or `kind load image-archive` read.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/ociimage"
)

// caBundles are where Linux distributions keep the CA bundle, most common
// first.
var caBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
	"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",             // openSUSE
	"/etc/ssl/cert.pem",                  // macOS, BSD
}

type options struct {
	out, version, revision, created, platforms, caBundle, goBin string
	trimpath                                                    bool
}

func newRoot() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "gdprgate-image",
		Short: "build gdprgate's container images without a Docker daemon",
		Long: `gdprgate-image compiles gdprgate and the example CRM for each platform and
writes their images (scratch, non-root user 65532, CA certificates, OCI labels)
as an OCI image layout (OUT/oci) and a docker-loadable tarball (OUT/images.tar,
for the machine's platform). Each image is tagged with the version and "latest".`,
		Args: cmdline.Args(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			return build(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "bin/image", "output directory")
	f.StringVar(&o.version, "version", "dev", "version stamped into the binaries and labels, and the images' tag")
	f.StringVar(&o.revision, "revision", "", "source revision label (default: the git commit, if any)")
	f.StringVar(&o.created, "created", "", "creation time, RFC 3339 or Unix seconds (default: $SOURCE_DATE_EPOCH, else the git commit's time, else now)")
	f.StringVar(&o.platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated platforms")
	f.StringVar(&o.caBundle, "ca-bundle", "", "PEM bundle of CA certificates (default: the machine's)")
	f.StringVar(&o.goBin, "go", "go", "the go command")
	// -trimpath keeps the build machine's paths out of the binaries; tests
	// turn it off to reuse the packages `go test` compiled.
	f.BoolVar(&o.trimpath, "trimpath", true, "build with -trimpath")
	return cmd
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmdline.Execute(ctx, newRoot(), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func build(ctx context.Context, o options, stdout, stderr io.Writer) error {
	created, err := creationTime(ctx, o.created)
	if err != nil {
		return err
	}
	if o.revision == "" {
		o.revision = git(ctx, "rev-parse", "HEAD")
	}
	if o.caBundle == "" {
		for _, p := range caBundles {
			if _, err := os.Stat(p); err == nil {
				o.caBundle = p
				break
			}
		}
		if o.caBundle == "" {
			return cmdline.Usagef("no CA bundle found in %s: give --ca-bundle", strings.Join(caBundles, ", "))
		}
	}
	var platforms []string
	for _, p := range strings.Split(o.platforms, ",") {
		p = strings.TrimSpace(p)
		if _, err := v1.ParsePlatform(p); err != nil || !strings.HasPrefix(p, "linux/") {
			return cmdline.Usagef("--platforms: %q is not a linux/ARCH platform", p)
		}
		platforms = append(platforms, p)
	}
	images := map[string]v1.ImageIndex{}
	var tags []string
	for _, spec := range []ociimage.Spec{ociimage.Gdprgate, ociimage.ExampleCRM} {
		bins := map[string]string{}
		for _, p := range platforms {
			out := filepath.Join(o.out, "bin", strings.ReplaceAll(p, "/", "_"), filepath.Base(spec.Binary))
			if err := compile(ctx, o, p, spec.Package, out, stderr); err != nil {
				return err
			}
			bins[p] = out
		}
		idx, err := spec.Build(ociimage.Options{Binaries: bins, Version: o.version, Revision: o.revision, Created: created, CABundle: o.caBundle})
		if err != nil {
			return err
		}
		for _, tag := range []string{o.version, ociimage.DefaultTag} {
			ref := spec.Repository + ":" + tag
			images[ref] = idx
			tags = append(tags, ref)
		}
		d, _ := idx.Digest()
		fmt.Fprintf(stdout, "%s:%s  %s  (%s)\n", spec.Repository, o.version, d, strings.Join(platforms, ", "))
	}
	layoutDir := filepath.Join(o.out, "oci")
	if err := os.RemoveAll(layoutDir); err != nil {
		return err
	}
	if err := ociimage.WriteLayout(layoutDir, images); err != nil {
		return err
	}
	local := "linux/" + runtime.GOARCH
	if !contains(platforms, local) {
		local = platforms[0]
	}
	tarPath := filepath.Join(o.out, "images.tar")
	if err := ociimage.WriteTarball(tarPath, local, images); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "OCI image layout: %s (tags %s)\n", layoutDir, strings.Join(tags, ", "))
	fmt.Fprintf(stdout, "%s tarball: %s  — docker load -i %s, or kind load image-archive %s\n", local, tarPath, tarPath, tarPath)
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// compile builds a static binary of pkg for platform.
func compile(ctx context.Context, o options, platform, pkg, out string, stderr io.Writer) error {
	goos, arch, _ := strings.Cut(platform, "/")
	arch, variant, _ := strings.Cut(arch, "/")
	args := []string{"build", "-ldflags", "-s -w -X github.com/gdprgate/gdprgate/internal/version.Version=" + o.version, "-o", out}
	if o.trimpath {
		args = append(args, "-trimpath")
	}
	cmd := exec.CommandContext(ctx, o.goBin, append(args, pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+arch)
	if !o.trimpath && goos == runtime.GOOS && arch == runtime.GOARCH {
		// The packages `go test` compiled for this machine are reused
		// only with the same cgo setting; a static binary needs no cgo
		// anyway where net and os/user have pure Go fallbacks.
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+arch)
	}
	if arch == "arm" && variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(variant, "v"))
	}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %w", pkg, platform, err)
	}
	return nil
}

// creationTime is --created, else SOURCE_DATE_EPOCH, else the commit's
// time, else now: a rebuild of the same commit gives the same digests.
func creationTime(ctx context.Context, flag string) (time.Time, error) {
	s := flag
	if s == "" {
		s = os.Getenv("SOURCE_DATE_EPOCH")
	}
	if s == "" {
		s = git(ctx, "log", "-1", "--format=%ct")
	}
	if s == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, cmdline.Usagef("--created %q: want RFC 3339 or Unix seconds", s)
	}
	return t.UTC(), nil
}

func git(ctx context.Context, args ...string) string {
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
