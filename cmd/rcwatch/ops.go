package main

import (
	"context"
	"net/http"

	"github.com/rcwatch/rcwatch/pipeline"
)

func opsMux(rt *runtime) *http.ServeMux { return pipeline.OpsHandler(rt.reg, rt.health) }

func serveOps(ctx context.Context, addr string, h http.Handler, rt *runtime) error {
	return pipeline.ServeOps(ctx, addr, h, rt.log)
}
