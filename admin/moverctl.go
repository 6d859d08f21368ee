package admin

import (
	"fmt"

	"github.com/zest-stm/zest/mover"
)

func (h *handler) moverOf(r *Request) (string, *mover.Mover, error) {
	name, _, err := h.queue(r)
	if err != nil {
		return "", nil, err
	}
	if err := onlyParams(r); err != nil {
		return "", nil, err
	}
	if err := r.Decode(&struct{}{}); err != nil {
		return "", nil, err
	}
	m := h.opts.Movers[name]
	if m == nil {
		return "", nil, fmt.Errorf("%w: queue %q has no mover in the admin options", ErrNotFound, name)
	}
	return name, m, nil
}

func (h *handler) pauseMover(r *Request) (any, error) {
	_, p, err := h.moverOf(r)
	if err != nil {
		return nil, err
	}
	p.Pause()
	return map[string]bool{"paused": p.Paused()}, nil
}

func (h *handler) resumeMover(r *Request) (any, error) {
	_, p, err := h.moverOf(r)
	if err != nil {
		return nil, err
	}
	p.Resume()
	return map[string]bool{"paused": p.Paused()}, nil
}
