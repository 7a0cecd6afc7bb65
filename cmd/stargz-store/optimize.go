// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/convert"
	"github.com/stargz-store/stargz-store/convert/optimize"
	"github.com/stargz-store/stargz-store/internal/podmanconf"
	"github.com/stargz-store/stargz-store/layerfs"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store"
)

// scratchRepo is the repository of the unoptimized image in the scratch
// registry.
const scratchRepo, scratchTag = "stargz-optimize/image", "unoptimized"

type optimizeFlags struct {
	plainHTTP               bool
	authFile, logLevel      string
	chunkSize, minChunkSize int
	period                  time.Duration
	waitFor                 *regexp.Regexp
	podman, workDir         string
	src, dst                string
	cmd                     []string
}

func parseOptimizeFlags(args []string, stderr io.Writer) (optimizeFlags, error) {
	var f optimizeFlags
	fs := flag.NewFlagSet("stargz-store optimize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "allow plain HTTP and unverified TLS for SRC and DST")
	fs.StringVar(&f.authFile, "authfile", "", "auth.json with registry credentials (default: Podman's search order)")
	fs.IntVar(&f.chunkSize, "chunk-size", 4<<20, "split files into chunks of this many bytes")
	fs.IntVar(&f.minChunkSize, "min-chunk-size", 0, "pack files smaller than this into shared gzip members (0: off)")
	fs.DurationVar(&f.period, "period", optimize.DefaultPeriod, "stop the workload after this long")
	waitFor := fs.String("wait-for-output", "", "stop the workload as soon as a line of its output matches this regular expression")
	fs.StringVar(&f.podman, "podman", "podman", "podman binary that runs the workload")
	fs.StringVar(&f.workDir, "work-dir", "/var/tmp", "directory for the temporary files (the image twice, Podman's storage)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stargz-store optimize [flags] SRC DST [-- CMD [ARG...]]")
		fmt.Fprintln(stderr, "Runs CMD (default: the image's command) in SRC with Podman, records the files it reads,")
		fmt.Fprintln(stderr, "and converts SRC to eStargz at DST with those files first and prefetched.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	rest := fs.Args()
	if len(rest) < 2 || (len(rest) > 2 && rest[2] != "--") {
		fs.Usage()
		return f, fmt.Errorf("optimize: want SRC DST [-- CMD [ARG...]], got %q", rest)
	}
	f.src, f.dst = rest[0], rest[1]
	if len(rest) > 3 {
		f.cmd = rest[3:]
	}
	if f.period <= 0 {
		return f, fmt.Errorf("optimize: --period must be positive, got %s", f.period)
	}
	if *waitFor != "" {
		re, err := regexp.Compile(*waitFor)
		if err != nil {
			return f, fmt.Errorf("optimize: --wait-for-output: %w", err)
		}
		f.waitFor = re
	}
	return f, nil
}

// runOptimize records the files a workload reads in SRC and converts SRC
// to DST with those files prioritized:
//
//  1. SRC is converted, unoptimized, into a scratch registry on 127.0.0.1;
//  2. a store of our own, in this process, serves that image on a
//     temporary mountpoint with a layerfs.FileLog recording accesses;
//  3. Podman (a subprocess with a throw-away configuration whose only
//     additional layer store is that mount) runs the workload;
//  4. the mount is gone, the files are listed in first-access order;
//  5. SRC is converted again, to DST, with those files prioritized.
//
// This process serves the mount, so it never touches it itself (go-fuse's
// deadlock rule): everything inside runs in Podman's processes, and the
// work directory is deleted only once nothing is mounted below it.
// stdout gets the prioritized files, a summary and the manifest digest
// last; stderr progress, the workload's output and logs.
func runOptimize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseOptimizeFlags(args, stderr)
	if err != nil {
		return err
	}
	level, err := parseLevel(f.logLevel)
	if err != nil {
		return err
	}
	log := newLogger(stderr, level)
	regs, err := registryauth.New(registryauth.Options{AuthFile: f.authFile, Logger: log})
	if err != nil {
		return fmt.Errorf("registry configuration: %w", err)
	}
	defer regs.Close()
	if err := os.MkdirAll(f.workDir, 0o755); err != nil {
		return fmt.Errorf("optimize: %w", err)
	}
	work, err := os.MkdirTemp(f.workDir, "stargz-optimize-")
	if err != nil {
		return fmt.Errorf("optimize: %w", err)
	}
	defer removeWork(work, log)

	files, layers, err := recordSource(ctx, f, regs, work, log, stderr)
	if err != nil {
		return err
	}
	p := convert.PrioritizeFiles(files, layers)
	if err := p.Report(stdout); err != nil {
		return err
	}
	if len(p.Names) == 0 {
		log.Warn("the workload read no file of the image; DST will have no prefetch landmark")
	}
	fmt.Fprintf(stderr, "converting %s to %s with %d prioritized files\n", f.src, f.dst, len(p.Names))
	d, err := convert.Image(ctx, f.src, f.dst, convert.Options{
		SystemContext:    regs.SystemContext(),
		PlainHTTP:        f.plainHTTP,
		ChunkSize:        f.chunkSize,
		MinChunkSize:     f.minChunkSize,
		PrioritizedFiles: p.Names,
		Logger:           log,
		TempDir:          work,
		Progress:         stderr,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, d)
	return err
}

// recordSource converts SRC into a scratch registry, runs the workload on
// it through a recording store and returns the files it read and the
// scratch image's layer digests.
func recordSource(ctx context.Context, f optimizeFlags, regs *registryauth.Registries, work string, log *slog.Logger, stderr io.Writer) ([]convert.AccessedFile, []digest.Digest, error) {
	scratch, err := optimize.StartScratchRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return nil, nil, err
	}
	defer scratch.Close()
	sys, err := scratch.SystemContext(regs.SystemContext())
	if err != nil {
		return nil, nil, err
	}
	ref := scratch.Ref(scratchRepo, scratchTag)
	fmt.Fprintf(stderr, "converting %s for recording (scratch registry %s)\n", f.src, scratch.Addr())
	if _, err := convert.Image(ctx, f.src, ref, convert.Options{
		SystemContext: sys,
		PlainHTTP:     f.plainHTTP,
		ChunkSize:     f.chunkSize,
		MinChunkSize:  f.minChunkSize,
		Logger:        log,
		TempDir:       work,
	}); err != nil {
		return nil, nil, fmt.Errorf("optimize: %w", err)
	}
	layers, err := scratch.LayerDigests(ctx, scratchRepo, scratchTag)
	if err != nil {
		return nil, nil, err
	}
	conf, err := scratch.RegistriesConf()
	if err != nil {
		return nil, nil, err
	}
	files, err := recordWorkload(ctx, f, ref, conf, work, log, stderr)
	return files, layers, err
}

// recordWorkload serves the scratch image from a recording store mounted
// under work and runs the workload on it with Podman.
func recordWorkload(ctx context.Context, f optimizeFlags, ref, conf, work string, log *slog.Logger, stderr io.Writer) ([]convert.AccessedFile, error) {
	noDrops := filepath.Join(work, "no-registries.conf.d")
	auth := filepath.Join(work, "no-auth.json")
	mnt := filepath.Join(work, "mnt")
	for _, d := range []string{noDrops, mnt, filepath.Join(work, "podman")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("optimize: %w", err)
		}
	}
	if err := os.WriteFile(auth, []byte(podmanconf.NoAuth), 0o600); err != nil {
		return nil, fmt.Errorf("optimize: %w", err)
	}
	// The store reaches only the scratch registry, without credentials.
	regs, err := registryauth.New(registryauth.Options{AuthFile: auth, RegistriesConf: conf, RegistriesConfDir: noDrops, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("recording store: %w", err)
	}
	defer regs.Close()
	// No prefetch and no background fetch: only what the workload reads
	// is fetched, so the recording sees the workload and nothing else.
	m, err := store.New(store.Options{Registries: regs, Logger: log, NoPrefetch: true, NoBackgroundFetch: true})
	if err != nil {
		return nil, fmt.Errorf("recording store: %w", err)
	}
	defer m.Close()
	var rec layerfs.FileLog
	srv, err := layerfs.Mount(ctx, mnt, m, layerfs.Options{Logger: log, Recorder: &rec})
	if err != nil {
		return nil, fmt.Errorf("recording store: %w", err)
	}
	defer unmountRecording(srv, mnt, log)

	res, err := optimize.RunWorkload(ctx, optimize.Workload{
		Image:          ref,
		Args:           f.cmd,
		Period:         f.period,
		WaitFor:        f.waitFor,
		ALS:            mnt,
		RegistriesConf: conf,
		WorkDir:        filepath.Join(work, "podman"),
		Output:         stderr,
		Podman:         f.podman,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	how := fmt.Sprintf("exited with code %d", res.ExitCode)
	switch {
	case res.Matched:
		how = "stopped: its output matched --wait-for-output"
	case res.TimedOut:
		how = "stopped: --period elapsed"
	}
	fmt.Fprintf(stderr, "workload ran %s, %s\n", res.Duration.Round(10*time.Millisecond), how)
	if f.waitFor != nil && !res.Matched {
		log.Warn("the workload's output never matched --wait-for-output", "regexp", f.waitFor.String())
	}
	var files []convert.AccessedFile
	for _, r := range rec.Files() {
		files = append(files, convert.AccessedFile{Layer: r.Layer, Path: r.Path, Size: r.Size})
	}
	return files, nil
}

// unmountRecording unmounts the recording store. Podman's cleanup has
// released every diff tree by now; if the mount is still busy it is
// detached, so that nothing under the work directory is reachable when it
// is deleted.
func unmountRecording(srv *layerfs.Server, mnt string, log *slog.Logger) {
	var err error
	for range 5 {
		if err = srv.Unmount(); err == nil {
			srv.Wait()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	log.Warn("recording store busy; detaching it", "path", mnt, "err", err)
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		log.Error("detach recording store", "path", mnt, "err", err)
	}
}

// removeWork deletes the work directory, unless something is still
// mounted below it: deleting through a mount could reach the store this
// process serves, or the container's files.
func removeWork(work string, log *slog.Logger) {
	if busy, err := optimize.MountsBelow(work); err != nil || len(busy) > 0 {
		log.Error("not deleting the work directory: still mounted below it", "path", work, "mounts", busy, "err", err)
		return
	}
	if err := os.RemoveAll(work); err != nil {
		log.Warn("delete work directory", "path", work, "err", err)
	}
}
