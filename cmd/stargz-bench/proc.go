// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cleanups runs registered undo steps in reverse order, once.
type cleanups struct {
	mu  sync.Mutex
	fns []func()
}

func (c *cleanups) add(f func()) {
	c.mu.Lock()
	c.fns = append(c.fns, f)
	c.mu.Unlock()
}

func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// command runs name with args, stdout and stderr captured; the error carries
// the tail of the output. A cancelled ctx sends SIGTERM, then SIGKILL.
func command(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(out.Bytes(), 600))
	}
	return out.Bytes(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// daemon is a background process (registry, store) that is stopped by PID.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	return tail(b, 600)
}

func startDaemon(name, logPath string, env []string, bin string, args ...string) (*daemon, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a Ctrl-C reaches us, not it; we stop it
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		d.err = cmd.Wait()
		lf.Close()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the daemon's PID, waits up to 15 s, then SIGKILL.
func (d *daemon) stop() {
	if d == nil || !d.alive() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return
	case <-time.After(15 * time.Second):
	}
	slog.Warn("did not exit after SIGTERM; killing", "name", d.name, "pid", d.cmd.Process.Pid)
	d.cmd.Process.Kill()
	<-d.done
}

// mountsBelow lists mount points at or below dir, deepest first.
func mountsBelow(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 {
			continue
		}
		m := unescapeMount(fs[4])
		if m == dir || strings.HasPrefix(m, dir+"/") {
			ms = append(ms, m)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ms)))
	return ms
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func isMountPoint(dir string) bool {
	for _, m := range mountsBelow(dir) {
		if m == dir {
			return true
		}
	}
	return false
}

// umountBelow unmounts everything at or below dir (lazily if busy).
func umountBelow(dir string) {
	for range 3 {
		ms := mountsBelow(dir)
		if len(ms) == 0 {
			return
		}
		for _, m := range ms {
			if err := syscall.Unmount(m, 0); err != nil {
				syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
	}
}

// removeTree unmounts below dir and removes it.
func removeTree(dir string) error {
	if dir == "" || dir == "/" {
		return errors.New("refusing to remove " + dir)
	}
	umountBelow(dir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// dropCaches writes back dirty pages and drops the page cache, dentries and
// inodes.
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
