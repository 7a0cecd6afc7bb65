// SPDX-License-Identifier: Apache-2.0

package optimize

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/stargz-store/stargz-store/internal/podmanconf"
)

// DefaultPeriod is how long a workload runs when Workload.Period is 0.
const DefaultPeriod = 10 * time.Second

// Workload is a container run in a throw-away Podman instance whose only
// additional layer store is ALS, so that every file the container reads
// comes through that store.
type Workload struct {
	// Image is the reference to run, fully qualified.
	Image string
	// Args replace the image's command (its entrypoint stays); empty runs
	// the image's default command. The image's env and workdir apply.
	Args []string
	// Period bounds the run once the container is being started; the
	// container is stopped when it elapses. 0 means DefaultPeriod.
	Period time.Duration
	// WaitFor, if not nil, stops the container as soon as a line of its
	// output (stdout or stderr) matches.
	WaitFor *regexp.Regexp
	// ALS is the mountpoint of the additional layer store (a
	// `stargz-store` tree, used with the :ref option).
	ALS string
	// RegistriesConf is the registries.conf Podman uses (the registry
	// serving Image, usually insecure).
	RegistriesConf string
	// WorkDir holds Podman's graph root and configuration; it must exist.
	// The run root goes to a short directory under /run/sgzo (a long one
	// makes Podman 4.3.1 wait 20 s on `run --rm`).
	WorkDir string
	// Output receives the container's stdout and stderr; nil discards.
	Output io.Writer
	// Podman is the podman binary; "" means "podman" from PATH.
	Podman string
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// WorkloadResult says how a workload run ended.
type WorkloadResult struct {
	// Duration is how long the container ran (from `podman run` until it
	// exited or was stopped).
	Duration time.Duration
	// Matched is true when WaitFor matched.
	Matched bool
	// TimedOut is true when Period elapsed first.
	TimedOut bool
	// ExitCode is the exit code of `podman run` when the container exited
	// by itself, or -1.
	ExitCode int
}

// Podman's own exit codes for `podman run`: it failed, or the command
// could not be run or found. Any other code is the container's.
const (
	podmanRunFailed     = 125
	podmanNotExecutable = 126
	podmanNotFound      = 127
)

// RunWorkload pulls w.Image and runs it with w.Args in a Podman instance
// of its own (graph root and configuration under w.WorkDir, run root
// under /run/sgzo; the host's storage is never touched), until the
// container exits, w.Period elapses, w.WaitFor matches or ctx ends. It
// removes the container and the image, unmounts what Podman left mounted
// below its roots and deletes the run root before returning, also on
// error. A container that exits with a non-zero code is not an error; a
// Podman failure (exit codes 125 to 127) is.
func RunWorkload(ctx context.Context, w Workload) (res WorkloadResult, err error) {
	if w.Period <= 0 {
		w.Period = DefaultPeriod
	}
	if w.Podman == "" {
		w.Podman = "podman"
	}
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Output == nil {
		w.Output = io.Discard
	}
	p, err := newPodmanInstance(w)
	if err != nil {
		return WorkloadResult{ExitCode: -1}, err
	}
	defer func() { err = errors.Join(err, p.cleanup()) }()

	w.Logger.Info("pulling the workload image", "image", w.Image)
	pullCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if out, err := p.command(pullCtx, "pull", "-q", w.Image).CombinedOutput(); err != nil {
		return WorkloadResult{ExitCode: -1}, fmt.Errorf("podman pull %s: %w: %s", w.Image, err, bytes.TrimSpace(out))
	}
	return p.run(ctx, w)
}

// podmanInstance is one throw-away Podman configuration.
type podmanInstance struct {
	w       Workload
	conf    string // containers.conf
	storage string // storage.conf
	auth    string // empty auth.json
	root    string // graph root
	runRoot string // run root, under /run/sgzo
	name    string // the container's name
}

// runRootBase keeps Podman's run root short (see Workload.WorkDir).
const runRootBase = "/run/sgzo"

func newPodmanInstance(w Workload) (*podmanInstance, error) {
	if err := os.MkdirAll(runRootBase, 0o700); err != nil {
		return nil, fmt.Errorf("podman run root: %w", err)
	}
	rr, err := os.MkdirTemp(runRootBase, "")
	if err != nil {
		return nil, fmt.Errorf("podman run root: %w", err)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	p := &podmanInstance{w: w,
		conf:    filepath.Join(w.WorkDir, "containers.conf"),
		storage: filepath.Join(w.WorkDir, "storage.conf"),
		auth:    filepath.Join(w.WorkDir, "auth.json"),
		root:    filepath.Join(w.WorkDir, "graph"),
		runRoot: rr,
		name:    "stargz-optimize-" + hex.EncodeToString(id[:]),
	}
	if err := p.writeConfig(); err != nil {
		_ = os.RemoveAll(rr)
		return nil, err
	}
	return p, nil
}

// writeConfig writes the instance's configuration (see package
// podmanconf: the roots are set in storage.conf, never with flags).
func (p *podmanInstance) writeConfig() error {
	files := map[string][]byte{
		p.conf:    podmanconf.ContainersConf(filepath.Join(p.runRoot, "libpod")),
		p.storage: podmanconf.StorageConf(p.root, filepath.Join(p.runRoot, "storage"), p.w.ALS),
		p.auth:    []byte(podmanconf.NoAuth),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("podman configuration: %w", err)
		}
	}
	return nil
}

// command returns podman ARGS with the instance's environment.
func (p *podmanInstance) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.w.Podman, args...)
	cmd.Env = append(os.Environ(),
		"CONTAINERS_CONF="+p.conf,
		"CONTAINERS_STORAGE_CONF="+p.storage,
		"CONTAINERS_REGISTRIES_CONF="+p.w.RegistriesConf,
		"REGISTRY_AUTH_FILE="+p.auth)
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run starts the container and waits for its end, the period, a match or
// ctx, then stops it.
func (p *podmanInstance) run(ctx context.Context, w Workload) (WorkloadResult, error) {
	res := WorkloadResult{ExitCode: -1}
	args := append([]string{"run", "--rm", "--name", p.name, w.Image}, w.Args...)
	// Not CommandContext: the container is stopped with `podman stop`, so
	// that podman run can remove it; the process is killed only if that
	// fails.
	cmd := p.command(context.WithoutCancel(ctx), args...)
	cmd.Cancel = nil
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	matched := make(chan struct{})
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		scanOutput(pr, w.Output, w.WaitFor, matched)
	}()
	start := time.Now()
	w.Logger.Info("running the workload", "image", w.Image, "args", w.Args, "period", w.Period)
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-scanDone
		return res, fmt.Errorf("podman run: %w", err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		exited <- err
	}()
	timer := time.NewTimer(w.Period)
	defer timer.Stop()
	var waitErr error
	stopped := true
	select {
	case waitErr = <-exited:
		stopped = false
	case <-timer.C:
		res.TimedOut = true
	case <-matched:
		res.Matched = true
	case <-ctx.Done():
	}
	res.Duration = time.Since(start)
	if stopped {
		w.Logger.Info("stopping the workload", "after", res.Duration.Round(time.Millisecond), "matched", res.Matched, "timedOut", res.TimedOut)
		waitErr = p.stop(cmd, exited)
	}
	<-scanDone
	if ctx.Err() != nil {
		return res, fmt.Errorf("run workload: %w", ctx.Err())
	}
	if stopped {
		return res, nil
	}
	var exit *exec.ExitError
	switch {
	case waitErr == nil:
		res.ExitCode = 0
	case errors.As(waitErr, &exit):
		res.ExitCode = exit.ExitCode()
		switch res.ExitCode {
		case podmanRunFailed, podmanNotExecutable, podmanNotFound:
			return res, fmt.Errorf("podman run %s: exit code %d (podman or the command failed; see its output)", w.Image, res.ExitCode)
		}
	default:
		return res, fmt.Errorf("podman run: %w", waitErr)
	}
	return res, nil
}

// stop stops the container (SIGKILL at once: the recording is complete)
// and waits for `podman run` to exit; if it does not within 30 s, the
// podman process is killed by its PID.
func (p *podmanInstance) stop(cmd *exec.Cmd, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := p.command(ctx, "stop", "-t", "0", p.name).CombinedOutput(); err != nil {
		p.w.Logger.Debug("podman stop", "err", err, "output", string(bytes.TrimSpace(out)))
	}
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
		p.w.Logger.Warn("podman run did not exit after podman stop; killing it", "pid", cmd.Process.Pid)
		_ = cmd.Process.Kill()
		return <-exited
	}
}

// scanOutput copies r to out line by line and closes matched at the
// first line re matches (re may be nil). It reads r to its end.
func scanOutput(r io.Reader, out io.Writer, re *regexp.Regexp, matched chan<- struct{}) {
	var once sync.Once
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			_, _ = io.WriteString(out, line)
			if re != nil && re.MatchString(strings.TrimRight(line, "\r\n")) {
				once.Do(func() { close(matched) })
			}
		}
		if err != nil {
			_, _ = io.Copy(io.Discard, r)
			return
		}
	}
}

// cleanup removes the container and the image (which releases the layers
// in the store), unmounts whatever is still mounted below the roots, and
// deletes the run root. The graph root stays for the caller to delete
// with WorkDir; it holds no mount afterwards.
func (p *podmanInstance) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{{"rm", "-af", "-t", "0"}, {"rmi", "-af"}} {
		if out, err := p.command(ctx, args...).CombinedOutput(); err != nil {
			p.w.Logger.Debug("podman cleanup", "args", args, "err", err, "output", string(bytes.TrimSpace(out)))
		}
	}
	var errs []error
	for _, dir := range []string{p.runRoot, p.root} {
		if err := unmountBelow(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("podman cleanup: %w", err)
	}
	if err := os.RemoveAll(p.runRoot); err != nil {
		return fmt.Errorf("podman cleanup: %w", err)
	}
	return nil
}
