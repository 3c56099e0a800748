//! The sites table as shown: sorted by a column (`S` cycles it) and filtered by text
//! (`/`). The table is the shown data's rows, or a copy of them when filtered or sorted
//! otherwise, rebuilt when the data, the sort or the filter changes, so that drawing and
//! the selection index into one stable list.

use std::cmp::Reverse;

use taskscope::model::SiteRow;

use super::App;

/// Longest filter text kept (characters); typing beyond it is ignored.
pub const MAX_FILTER_CHARS: usize = 200;

/// The column the sites table is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortColumn {
    /// Live tasks, most first (the default).
    #[default]
    Live,
    /// Change over the history window (or since the baseline), largest growth first.
    Delta,
    /// Tasks spawned, most first.
    Spawned,
    /// Tasks completed, most first.
    Completed,
    /// Busy time, most first.
    Busy,
    /// Site label, A to Z.
    Site,
}

impl SortColumn {
    /// The column after this one (`S`), wrapping around.
    pub fn next(self) -> Self {
        match self {
            SortColumn::Live => SortColumn::Delta,
            SortColumn::Delta => SortColumn::Spawned,
            SortColumn::Spawned => SortColumn::Completed,
            SortColumn::Completed => SortColumn::Busy,
            SortColumn::Busy => SortColumn::Site,
            SortColumn::Site => SortColumn::Live,
        }
    }

    /// Its name in the table's title.
    pub fn name(self) -> &'static str {
        match self {
            SortColumn::Live => "live",
            SortColumn::Delta => "Δ",
            SortColumn::Spawned => "spawned",
            SortColumn::Completed => "completed",
            SortColumn::Busy => "busy",
            SortColumn::Site => "site",
        }
    }
}

impl App {
    /// The column the sites table is sorted by.
    pub fn sort(&self) -> SortColumn {
        self.sort
    }

    /// Sorts the sites table by the next column (key `S`); the selected site stays
    /// selected. Returns the new column.
    pub fn cycle_sort(&mut self) -> SortColumn {
        self.sort = self.sort.next();
        self.refresh_table();
        self.sort
    }

    /// The text the sites are filtered by (empty: all shown).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Whether the filter is being typed (after `/`, until Enter or Esc).
    pub fn filter_editing(&self) -> bool {
        self.filter_editing
    }

    /// Starts typing the filter (key `/`): keys go to it until Enter or Esc.
    pub fn start_filter(&mut self) {
        self.filter_editing = true;
    }

    /// Adds a character to the filter (at most [`MAX_FILTER_CHARS`]; control characters
    /// are dropped).
    pub fn filter_push(&mut self, c: char) {
        if !c.is_control() && self.filter.chars().count() < MAX_FILTER_CHARS {
            self.filter.push(c);
            self.refresh_table();
        }
    }

    /// Removes the filter's last character.
    pub fn filter_pop(&mut self) {
        if self.filter.pop().is_some() {
            self.refresh_table();
        }
    }

    /// Stops typing and keeps the filter (Enter).
    pub fn finish_filter(&mut self) {
        self.filter_editing = false;
    }

    /// Stops typing and drops the filter (Esc): every site is shown again.
    pub fn clear_filter(&mut self) {
        self.filter_editing = false;
        if !self.filter.is_empty() {
            self.filter.clear();
            self.refresh_table();
        }
    }

    /// Number of sites in the shown data, filtered or not.
    pub fn total_sites(&self) -> usize {
        self.shown().rows().len()
    }

    /// Change of `row`'s live count: since the baseline when the snapshot has one (as the
    /// Δbase column), else over its history (Δ60s).
    pub fn site_delta(&self, row: &SiteRow) -> i128 {
        match self.snapshot().and_then(|s| s.baseline.as_ref()) {
            Some(b) => b
                .sites
                .iter()
                .find(|d| d.site == row.site)
                .map_or(0, |d| i128::from(d.live_delta())),
            None => self.site_history(&row.site).map_or(0, |h| h.delta()),
        }
    }

    /// Rebuilds the table from the shown data, keeping the selected site selected.
    pub(super) fn refresh_table(&mut self) {
        let keys = self.selection_keys();
        self.rebuild_table();
        self.restore_selection(keys);
    }

    /// The shown data's rows that match the filter, in the sort order: `None` when that is
    /// the shown rows as they are (no filter, sorted by live count), else a copy.
    pub(super) fn rebuild_table(&mut self) {
        if self.filter.is_empty() && self.sort == SortColumn::Live {
            self.table = None;
            return;
        }
        let needle = self.filter.to_lowercase();
        let mut table: Vec<SiteRow> = self
            .shown()
            .rows()
            .iter()
            .filter(|r| needle.is_empty() || r.site.to_lowercase().contains(&needle))
            .cloned()
            .collect();
        // The data's rows come by live count; a stable sort keeps that order among ties.
        match self.sort {
            SortColumn::Live => {}
            SortColumn::Delta => {
                let deltas: std::collections::HashMap<String, i128> = table
                    .iter()
                    .map(|r| (r.site.clone(), self.site_delta(r)))
                    .collect();
                table.sort_by_key(|r| Reverse(deltas.get(&r.site).copied().unwrap_or(0)));
            }
            SortColumn::Spawned => table.sort_by_key(|r| Reverse(r.spawned)),
            SortColumn::Completed => table.sort_by_key(|r| Reverse(r.completed)),
            SortColumn::Busy => table.sort_by(|a, b| b.busy_seconds.total_cmp(&a.busy_seconds)),
            SortColumn::Site => table.sort_by(|a, b| a.site.cmp(&b.site)),
        }
        self.table = Some(table);
    }
}
