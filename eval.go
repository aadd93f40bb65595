package secnet

import (
	"context"
	"slices"
)

// cost is what reading an attribute set costs, in classes: what the
// kernel captured at connect() and gives for the socket (credentials,
// groups, label), what is read from /proc through a pidfd (program,
// cgroup, namespaces), and a digest of the executable.
func (a attrs) cost() int {
	switch {
	case a&attrDigest != 0:
		return 2
	case a&procAttrs != 0:
		return 1
	}
	return 0
}

// byCost returns the indexes of rules, cheapest first, in the order given
// within a class.
func byCost(rules []Rule) []int {
	order := make([]int, len(rules))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return rules[a].need.cost() - rules[b].need.cost() })
	return order
}

// evaluation applies rules to one peer. When id is set, each rule's
// attributes are read through it just before the rule runs, cheapest rules
// first, and no rule is evaluated once the verdict is settled; otherwise p
// holds all it will ever hold and every rule is evaluated (Rule.Check).
type evaluation struct {
	p   *Peer
	id  *identity       // reads what a rule needs; nil: read nothing
	ctx context.Context // stops the reading (with id)
}

// run evaluates r. exact says whether the caller needs to tell a peer that
// does not match from one whose identity could not be read (under Not);
// otherwise a failure of either kind settles a conjunction.
func (e *evaluation) run(r Rule, exact bool) error {
	if r.eval != nil {
		return r.eval(e, exact)
	}
	if e.id != nil {
		e.id.read(e.ctx, r.need)
	}
	return r.check(e.p)
}

// allOf passes when every rule passes. Rules are evaluated cheapest first;
// once one has failed, rules of a costlier class than it are not
// evaluated (when exact, only once one has failed on a mismatch, which
// decides even under Not). The failure lists each rule that was evaluated
// and failed, in the order given, and the rules that were not evaluated.
func (e *evaluation) allOf(rules []Rule, order []int, exact bool) error {
	var errs []error
	definite := false
	settled := -1 // the cost class in which the verdict was settled
	stop := len(order)
	for n, i := range order {
		r := rules[i]
		if settled >= 0 && r.need.cost() > settled {
			stop = n
			break
		}
		err := e.run(r, exact)
		if err == nil {
			continue
		}
		if errs == nil {
			errs = make([]error, len(rules))
		}
		errs[i] = err
		unknown := isUnknown(err)
		definite = definite || !unknown
		if e.id != nil && settled < 0 && (!unknown || !exact) {
			settled = r.need.cost()
		}
	}
	if errs == nil {
		return nil
	}
	var res ruleErrors
	skipped := order[stop:]
	for i, r := range rules {
		switch {
		case errs[i] != nil:
			res.failed = append(res.failed, RuleError{Rule: r.name, Err: errs[i]})
		case slices.Contains(skipped, i):
			res.skipped = append(res.skipped, r.desc)
		}
	}
	if !definite {
		return &unknownError{res}
	}
	return res
}

// anyOf passes when one of rules passes, evaluating them cheapest first
// and stopping at the first that passes.
func (e *evaluation) anyOf(rules []Rule, order []int, exact bool) error {
	var errs []error
	sawUnknown := false
	for _, i := range order {
		err := e.run(rules[i], exact)
		if err == nil {
			return nil
		}
		if errs == nil {
			errs = make([]error, len(rules))
		}
		errs[i] = err
		sawUnknown = sawUnknown || isUnknown(err)
	}
	var res ruleErrors
	for i, r := range rules {
		res.failed = append(res.failed, RuleError{Rule: r.name, Err: errs[i]})
	}
	err := error(anyOfError{res})
	if sawUnknown {
		return &unknownError{err}
	}
	return err
}

// anyOfError is the failure of AnyOf: no alternative passed.
type anyOfError struct{ ruleErrors }

func (e anyOfError) Error() string { return "none of the alternatives passed: " + e.ruleErrors.Error() }
