// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"testing"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

type noRegistries struct{}

func (noRegistries) SystemContext() *types.SystemContext { return &types.SystemContext{} }
func (noRegistries) Endpoints(context.Context, refspec.Reference) ([]registryauth.Endpoint, error) {
	return nil, nil
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{Registries: noRegistries{}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.ResolveTimeout != 30*time.Second || o.FetchTimeout != 10*time.Second || o.ReadTimeout != 30*time.Second ||
		o.IdleTimeout != 2*time.Minute || o.NotLazyTTL != time.Minute || o.Retries != 0 || o.Logger == nil ||
		o.clock == nil || o.backoff != 100*time.Millisecond || o.maxBackoff != 2*time.Second ||
		o.MaxFetchMemory != 256<<20 || o.MaxIndexMemory != 512<<20 {
		t.Errorf("defaults = %+v", o)
	}
	for _, bad := range []Options{{}, {Registries: noRegistries{}, IdleTimeout: -time.Second}, {Registries: noRegistries{}, MaxTOCSize: -1},
		{Registries: noRegistries{}, FetchTimeout: -1}, {Registries: noRegistries{}, ReadTimeout: -1},
		{Registries: noRegistries{}, MaxFetchMemory: -1}, {Registries: noRegistries{}, MaxIndexMemory: -1}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) succeeded", bad)
		}
	}
}
