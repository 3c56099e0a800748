//! Several targets watched at once (`taskscope URL1 URL2 ...`): one [`App`] per target,
//! each fed by its own source independently (a dead one never holds up the others), and
//! which one is shown. Keys go to the shown target; Tab and the number keys pick another.

use super::{App, ConnectionStatus, TargetsSummary};

/// Most targets watched at once (the number keys reach the first nine; Tab all of them).
pub const MAX_TARGETS: usize = 32;

/// The targets and which one is shown.
#[derive(Debug, Clone)]
pub struct Workbench {
    targets: Vec<App>,
    active: usize,
}

impl Workbench {
    /// Watches `targets` (at least one, at most [`MAX_TARGETS`]: extra ones are dropped),
    /// showing the first.
    ///
    /// # Panics
    ///
    /// When `targets` is empty (the runners refuse an empty target list before this).
    pub fn new(mut targets: Vec<App>) -> Self {
        targets.truncate(MAX_TARGETS);
        assert!(!targets.is_empty(), "a workbench needs a target");
        let mut wb = Workbench { targets, active: 0 };
        wb.sync();
        wb
    }

    /// Every target, in the order given.
    pub fn targets(&self) -> &[App] {
        &self.targets
    }

    /// One target's state, to apply what its source answered.
    pub fn target_mut(&mut self, index: usize) -> Option<&mut App> {
        self.targets.get_mut(index)
    }

    /// Watches one more target (shown after the others); `false`, and nothing added, when
    /// [`MAX_TARGETS`] are watched already. It takes the shared refresh interval.
    pub fn add(&mut self, mut target: App) -> bool {
        if self.targets.len() >= MAX_TARGETS {
            return false;
        }
        target.set_refresh(self.app().refresh());
        self.targets.push(target);
        self.sync();
        true
    }

    /// Index of the target shown.
    pub fn active(&self) -> usize {
        self.active
    }

    /// The target shown.
    pub fn app(&self) -> &App {
        &self.targets[self.active]
    }

    /// The target shown, for keys.
    pub fn app_mut(&mut self) -> &mut App {
        &mut self.targets[self.active]
    }

    /// Shows target `index` (0-based); ignored when there is no such target. The refresh
    /// interval is shared: the new target takes the current one's.
    pub fn select(&mut self, index: usize) {
        if index < self.targets.len() && index != self.active {
            let refresh = self.app().refresh();
            self.active = index;
            self.targets[index].set_refresh(refresh);
        }
        self.sync();
    }

    /// Shows the next target (Tab), wrapping around.
    pub fn next(&mut self) {
        self.select((self.active + 1) % self.targets.len());
    }

    /// Shows the previous target (Shift-Tab), wrapping around.
    pub fn previous(&mut self) {
        self.select((self.active + self.targets.len() - 1) % self.targets.len());
    }

    /// Every target summed: how many, how many answer, live tasks over their last good
    /// snapshots.
    pub fn summary(&self) -> TargetsSummary {
        TargetsSummary {
            targets: self.targets.len(),
            answering: self
                .targets
                .iter()
                .filter(|t| t.status == ConnectionStatus::Connected)
                .count(),
            live_total: self
                .targets
                .iter()
                .filter(|t| t.snapshot().is_some())
                .fold(0u64, |acc, t| acc.saturating_add(t.live_total())),
        }
    }

    /// Hands the summary to the shown target (its overview draws it) when there are
    /// several targets, and the shared refresh interval to every target. Call after
    /// applying results and keys.
    pub fn sync(&mut self) {
        let summary = (self.targets.len() > 1).then(|| self.summary());
        let refresh = self.app().refresh();
        for t in &mut self.targets {
            t.set_refresh(refresh);
        }
        self.targets[self.active].set_targets_summary(summary);
    }
}
