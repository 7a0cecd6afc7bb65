// SPDX-License-Identifier: Apache-2.0

// Package systemd tells systemd how the daemon is doing (sd_notify) and
// ships the unit file that runs it.
//
// With Type=notify, systemd considers the store started only once Ready
// has been sent, which the daemon does after the FUSE mount is live; units
// ordered Before= the store (podman, crio) then never see an empty
// mountpoint. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
package systemd

import (
	"fmt"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready reports that the mount is live. It returns false, nil when not run
// by systemd.
func Ready() (bool, error) { return notify(daemon.SdNotifyReady) }

// Stopping reports that the daemon is shutting down.
func Stopping() (bool, error) { return notify(daemon.SdNotifyStopping) }

// Status sets the one-line status systemctl shows.
func Status(s string) (bool, error) { return notify("STATUS=" + s) }

func notify(state string) (bool, error) {
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return sent, nil
}
