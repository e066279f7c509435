package commands

import (
	"context"
	"errors"
	"strings"

	"github.com/helpdesk/messenger/domain"
	"github.com/helpdesk/messenger/domain/directory"
	"github.com/helpdesk/messenger/domain/item"
)

func decideItem(cmd item.Command) func(item.State) ([]item.Event, error) {
	return func(s item.State) ([]item.Event, error) { return item.Decide(s, cmd) }
}

func canManageItems(p directory.Principal) bool {
	return p.IsStaff() && (p.Role == directory.Agent || p.Role == directory.Admin)
}

// CreateItem creates a ticket or task, with its assignees.
func (s *Service) CreateItem(ctx context.Context, p directory.Principal, kind item.Kind, title, description string, assignees []string) (string, Result, error) {
	if !canManageItems(p) {
		return "", Result{}, ErrForbidden
	}
	if len(assignees) > 0 && len(assignees) <= item.MaxPeople {
		missing, err := s.access.MissingUsers(ctx, assignees)
		if err != nil {
			return "", Result{}, err
		}
		if len(missing) > 0 {
			return "", Result{}, domain.Invalid("assignees", "no user "+strings.Join(missing, ", "))
		}
	}
	id := s.cfg.NewID()
	cmd := item.Create{Meta: s.meta(p), ItemID: id, Kind: kind, Title: title, Description: description, Assignees: assignees}
	res, err := execute(ctx, s, item.Stream(id), item.Evolve, decideItem(cmd), nil, nil)
	return id, res, err
}

// Assign adds userID to the assignees of item id.
func (s *Service) Assign(ctx context.Context, p directory.Principal, id, userID string) (Result, error) {
	return s.itemPerson(ctx, p, id, userID, item.Assign{Meta: s.meta(p), UserID: userID})
}

// Follow adds userID to the followers of item id.
func (s *Service) Follow(ctx context.Context, p directory.Principal, id, userID string) (Result, error) {
	return s.itemPerson(ctx, p, id, userID, item.Follow{Meta: s.meta(p), UserID: userID})
}

func (s *Service) itemPerson(ctx context.Context, p directory.Principal, id, userID string, cmd item.Command) (Result, error) {
	if !canManageItems(p) {
		return Result{}, ErrForbidden
	}
	if exists, err := s.exists(ctx, item.Stream(id)); err != nil || !exists {
		if err == nil {
			err = notFound("item", id)
		}
		return Result{}, err
	}
	if userID == "" {
		return Result{}, domain.Invalid("user_id", "is required")
	}
	missing, err := s.access.MissingUsers(ctx, []string{userID})
	if err != nil {
		return Result{}, err
	}
	if len(missing) > 0 {
		return Result{}, domain.Invalid("user_id", "no user "+userID)
	}
	res, err := execute(ctx, s, item.Stream(id), item.Evolve, decideItem(cmd), nil, nil)
	if errors.Is(err, item.ErrNotFound) {
		return res, notFound("item", id)
	}
	return res, err
}
