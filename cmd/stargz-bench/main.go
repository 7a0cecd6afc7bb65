// SPDX-License-Identifier: Apache-2.0

// Command stargz-bench benchmarks lazy pulling through stargz-store against
// a plain `podman pull` + `podman run`, over an emulated WAN link.
//
// It builds two images locally (busybox-static, and Debian + python3 made
// with debootstrap and cached under -cache), pushes them as gzip images to
// Debian's docker-registry on 127.0.0.1, converts them to eStargz with
// `stargz-store convert`, and serves the registry through a TCP proxy that
// emulates a WAN link in user space (one-way delay and a rate limit, each
// direction). Every measured run starts cold: fresh Podman storage, a
// stargz-store restarted with a fresh --root, the page cache dropped. Per
// image it measures `podman pull` + `podman run` of the gzip image (Podman 4),
// `podman run` of the eStargz image through the store (Podman 4, Gen A), of an
// optimized image if `stargz-store optimize` exists, and through Podman 5 in
// the Debian trixie chroot (Gen B); then a warm re-read of a 100 MiB file
// through the mount against local disk. It prints a table and writes JSON
// and Markdown reports. See docs/bench.md.
//
// Everything it starts is stopped by PID and everything it mounts is
// unmounted on exit, also on failure or Ctrl-C. It must run as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	runs         int
	delay        time.Duration
	rateMbit     float64
	images       []string
	out          string
	skipP5       bool
	skipWarm     bool
	storeBin     string
	storeConfig  string
	logs         string
	cacheDir     string
	p5Base       string
	repo         string
	optimizeArgs string
	bigMiB       int
}

func (o options) proxyConfig(parseHTTP bool) ProxyConfig {
	return ProxyConfig{Delay: o.delay, Rate: o.rateMbit * 1e6, ParseHTTP: parseHTTP}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("stargz-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs, _ := strconv.Atoi(envOr("BENCH_RUNS", "5"))
	delay, err := time.ParseDuration(envOr("BENCH_DELAY", "20ms"))
	if err != nil {
		return o, fmt.Errorf("BENCH_DELAY: %w", err)
	}
	rate, err := strconv.ParseFloat(envOr("BENCH_RATE", "200"), 64)
	if err != nil {
		return o, fmt.Errorf("BENCH_RATE: %w", err)
	}
	images := envOr("BENCH_IMAGES", "busybox,python")
	fs.IntVar(&o.runs, "runs", runs, "measured runs per image and mode ($BENCH_RUNS)")
	fs.DurationVar(&o.delay, "delay", delay, "one-way delay of the emulated WAN, each direction ($BENCH_DELAY)")
	fs.Float64Var(&o.rateMbit, "rate", rate, "rate of the emulated WAN in Mbit/s, each direction; 0 = unlimited ($BENCH_RATE)")
	fs.StringVar(&images, "images", images, "comma-separated images: busybox, python ($BENCH_IMAGES)")
	fs.StringVar(&o.out, "out", envOr("BENCH_OUT", "out/bench.json"), "JSON report (a Markdown table is written beside it, .md)")
	fs.BoolVar(&o.skipP5, "skip-podman5", os.Getenv("BENCH_SKIP_PODMAN5") != "", "skip the Podman 5 (Gen B) runs ($BENCH_SKIP_PODMAN5)")
	fs.BoolVar(&o.skipWarm, "skip-warm", os.Getenv("BENCH_SKIP_WARM") != "", "skip the warm re-read test ($BENCH_SKIP_WARM)")
	fs.StringVar(&o.storeBin, "store", envOr("STARGZ_STORE_BIN", "out/stargz-store"), "stargz-store binary")
	fs.StringVar(&o.storeConfig, "store-config", os.Getenv("BENCH_STORE_CONFIG"), "stargz-store TOML configuration for every run (default: an empty file) ($BENCH_STORE_CONFIG)")
	fs.StringVar(&o.logs, "logs", envOr("BENCH_LOGS", "out/bench-logs"), "directory for the store's debug logs, one per run (emptied first; \"\" = keep none)")
	fs.StringVar(&o.cacheDir, "cache", envOr("BENCH_CACHE", "/var/tmp/sgz-bench-cache"), "cache of built rootfs tarballs")
	fs.StringVar(&o.p5Base, "podman5-base", envOr("SGZ_P5_BASE", "/var/tmp/podman5-chroot"), "the Podman 5 chroot (tests/podman5/setup.sh)")
	fs.StringVar(&o.repo, "repo", ".", "the repository (for tests/podman5/setup.sh)")
	fs.StringVar(&o.optimizeArgs, "optimize-args", envOr("BENCH_OPTIMIZE_ARGS", "optimize --plain-http --work-dir {work} {src} {dst} -- {cmd}"),
		"stargz-store arguments that optimize an image: {src}, {dst}, {work} (a temp dir), {cmd} (the workload) ($BENCH_OPTIMIZE_ARGS)")
	fs.IntVar(&o.bigMiB, "big-mib", 100, "size of the file of the warm re-read test, MiB")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.runs < 1 {
		return o, fmt.Errorf("-runs %d: want at least 1", o.runs)
	}
	for _, s := range strings.Split(images, ",") {
		switch s = strings.TrimSpace(s); s {
		case "busybox", "python":
			o.images = append(o.images, s)
		case "":
		default:
			return o, fmt.Errorf("-images: unknown image %q (busybox, python)", s)
		}
	}
	if o.storeBin, err = filepath.Abs(o.storeBin); err != nil {
		return o, err
	}
	return o, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "stargz-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opt, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root (rootful podman, FUSE mounts, drop_caches, chroot)")
	}
	for _, t := range []string{"podman", "runc", "docker-registry", "debootstrap", "tar"} {
		if _, err := execLookPath(t); err != nil {
			return fmt.Errorf("%s is missing (make bench installs it): %w", t, err)
		}
	}
	if _, err := os.Stat(opt.storeBin); err != nil {
		return fmt.Errorf("stargz-store binary: %w (make build)", err)
	}
	if opt.logs != "" {
		if err := os.RemoveAll(opt.logs); err != nil {
			return fmt.Errorf("-logs: %w", err)
		}
		if err := os.MkdirAll(opt.logs, 0o755); err != nil {
			return fmt.Errorf("-logs: %w", err)
		}
	}
	b := &bench{opt: opt}
	defer b.undo.run()
	if err := b.setup(); err != nil {
		return err
	}
	rep, err := b.benchmark(ctx, stderr)
	if rep != nil {
		if werr := rep.write(stdout, opt.out); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// setup makes the work directories and arranges their removal.
func (b *bench) setup() error {
	if err := os.MkdirAll("/run/sgzb", 0o755); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	var err error
	if b.work, err = os.MkdirTemp("/var/tmp", "sgzb."); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	b.undo.add(func() { removeTree(b.work) })
	if b.run, err = os.MkdirTemp("/run/sgzb", ""); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	b.undo.add(func() { removeTree(b.run); os.Remove("/run/sgzb") })
	b.id = filepath.Base(b.run)
	b.regConf = filepath.Join(b.work, "registries.conf")
	if err := os.MkdirAll(filepath.Join(b.work, "home"), 0o755); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	return os.WriteFile(filepath.Join(b.work, "no-auth.json"), []byte(`{"auths":{}}`), 0o644)
}

// setupPodman5 mounts the chroot (if it is not mounted yet; it is unmounted
// again at exit then) and makes this bench's directory in it.
func (b *bench) setupPodman5(ctx context.Context) error {
	root := filepath.Join(b.opt.p5Base, "root")
	script := filepath.Join(b.opt.repo, "tests/podman5")
	env := append(b.hostEnv(), "P5_BASE="+b.opt.p5Base)
	// The chroot is shared with others' e2e runs, which unmount it when they
	// end if they mounted it: b.mountPodman5 mounts what is missing before
	// each run, and whoever finds it unmounted owns it and tears it down.
	owned := false
	b.mountPodman5 = func(ctx context.Context) error {
		wasMounted := isMountPoint(root)
		if _, err := command(ctx, env, filepath.Join(script, "setup.sh"), "mount"); err != nil {
			return fmt.Errorf("podman 5 chroot: %w", err)
		}
		owned = owned || !wasMounted
		return nil
	}
	if _, err := command(ctx, env, filepath.Join(script, "setup.sh"), "build"); err != nil {
		return fmt.Errorf("podman 5 chroot: %w", err)
	}
	if err := b.mountPodman5(ctx); err != nil {
		return err
	}
	b.undo.add(func() {
		if !owned {
			return
		}
		if _, err := command(context.Background(), env, filepath.Join(script, "teardown.sh")); err != nil {
			fmt.Fprintln(os.Stderr, "stargz-bench:", err)
		}
	})
	b.p5Root = root
	b.p5Dir = "/srv/sgzb/" + b.id
	host := root + b.p5Dir // holds the store's mount point: private
	if err := os.MkdirAll(host, 0o700); err != nil {
		return fmt.Errorf("podman 5: %w", err)
	}
	b.undo.add(func() {
		removeTree(host)
		removeTree(root + "/run/sgzb/" + b.id)
		os.Remove(root + "/srv/sgzb") // only if empty: other benches may run
		os.Remove(root + "/run/sgzb")
	})
	return copyFile(host+"/registries.conf", b.regConf)
}
