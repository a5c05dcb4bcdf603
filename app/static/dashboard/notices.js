// Page-wide notices between views. A view that changed the list of simulations (a run
// submitted, cancelled or finished, a sweep cancelled or deleted) says so, and the history view,
// which owns the list, reloads it: the views that change the list need not import the history,
// which imports them (to open, cancel and clone runs), so the modules' imports stay acyclic.
const SIMULATIONS_CHANGED = "scarcity:simulations-changed";

export function simulationsChanged() { document.dispatchEvent(new Event(SIMULATIONS_CHANGED)); }

export function onSimulationsChanged(listener) {
  document.addEventListener(SIMULATIONS_CHANGED, () => { listener(); });
}
