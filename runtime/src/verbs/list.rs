use crate::error::Result;
use crate::store::StateRoot;
use crate::verbs::state::{describe, StateDoc};

/// Every container in the root; one whose state cannot be read is skipped with a warning.
pub fn list(root: &StateRoot) -> Result<Vec<StateDoc>> {
    let mut out = Vec::new();
    for id in root.ids()? {
        match root.load(&id) {
            Ok(container) => out.push(describe(&container)),
            Err(e) => tracing::warn!(id, "skipping container: {e}"),
        }
    }
    Ok(out)
}

/// runc's table: ID PID STATUS BUNDLE CREATED OWNER.
pub fn table(states: &[StateDoc]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "PID".into(),
        "STATUS".into(),
        "BUNDLE".into(),
        "CREATED".into(),
        "OWNER".into(),
    ]];
    for s in states {
        rows.push([
            s.id.clone(),
            s.pid.to_string(),
            s.status.clone(),
            s.bundle.clone(),
            s.created.clone(),
            s.owner.clone(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        text.push_str(cells.join("   ").trim_end());
        text.push('\n');
    }
    text
}
