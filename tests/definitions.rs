//! What every turn of a conversation carries: the model-visible part of `tools/list` (each
//! tool's name, description and input schema, as hosts pass them to their model). Printed,
//! and held under a limit: 2,600 tokens for the first twelve tools, 200 more for each tool
//! added since.

mod common;

use serde_json::json;
use sre_mcp::util::tokens::Encoding;

#[tokio::test]
async fn tool_definitions_stay_lean() {
    let client = common::start(&["--no-embeddings"]).await;
    let tools = client.list_all_tools().await.unwrap();
    let mut total = 0;
    let mut rows = Vec::new();
    for tool in &tools {
        let visible = json!({
            "name": tool.name,
            "description": tool.description,
            "input_schema": *tool.input_schema,
        });
        let tokens = Encoding::O200kBase.count(&visible.to_string());
        total += tokens;
        rows.push((tokens, tool.name.to_string()));
        let words = tool
            .description
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .count();
        assert!(words <= 70, "{}: a {words}-word description", tool.name);
    }
    rows.sort();
    eprintln!("tools/list, model-visible part (o200k tokens):");
    for (tokens, name) in rows.iter().rev() {
        eprintln!("  {tokens:>5}  {name}");
    }
    eprintln!("  {total:>5}  total for {} tools", tools.len());
    let limit = 2_600 + 200 * tools.len().saturating_sub(12);
    assert!(
        total <= limit,
        "{total} tokens of tool definitions for {} tools; the limit is {limit}",
        tools.len()
    );
    client.cancel().await.unwrap();
}
