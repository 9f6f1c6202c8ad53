//! An experiment as `wmx validate` shows it: one line per part.

use std::fmt::Write;

use super::Loaded;

impl Loaded {
    /// The experiment's parts, one line each.
    pub fn describe(&self) -> String {
        let e = &self.experiment;
        let m = &e.model;
        let mut out = String::new();
        let mut line = |label: &str, text: String| {
            let _ = writeln!(out, "{label:<11} {text}");
        };
        line("experiment", self.name());
        if self.files.len() > 1 {
            let chain: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
            line("files", chain.join(" extends "));
        }
        line("backend", format!("{:?}", e.backend));
        line(
            "text",
            format!(
                "{:?} Qwen3, {} layers × {} hidden, {} heads ({} kv), {:?}",
                m.init, m.num_hidden_layers, m.hidden_size, m.num_attention_heads, m.num_key_value_heads, m.dtype
            ),
        );
        if let Some(checkpoint) = &m.checkpoint {
            let state = if checkpoint.join("config.json").is_file() { "found" } else { "not present on this machine" };
            line("checkpoint", format!("{} ({state})", checkpoint.display()));
        }
        line(
            "wat stream",
            format!("{} segments × {} layers × {} hidden", e.fusion.layers.len(), e.wat.layers_per_segment, e.wat.hidden_size),
        );
        line("fusion", format!("before text layers {:?}, gate init {}", e.fusion.layers, e.fusion.gate_init));
        let s = &e.selection;
        line(
            "selection",
            format!(
                "op_match {} · layer_position {} · reasonableness {} · confidence {} (T = {})",
                s.op_match, s.layer_position, s.reasonableness, s.confidence, s.temperature
            ),
        );
        let b = &e.sandbox;
        line(
            "sandbox",
            format!(
                "fuel {}, {} pages, {} ms, {} KiB stack, capabilities {:?}",
                b.fuel, b.memory_pages, b.deadline_ms, b.stack_kib, b.capabilities
            ),
        );
        if !e.sweep.is_empty() {
            let members: usize = e.sweep.values().map(Vec::len).product();
            line("sweep", format!("{members} members over {}", e.sweep.keys().cloned().collect::<Vec<_>>().join(", ")));
        }
        out
    }
}
