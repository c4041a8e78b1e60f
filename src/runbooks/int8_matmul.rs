//! Rewrites the int8-weight model so that ONNX Runtime multiplies by the int8 weights directly.
//!
//! The shipped model stores each weight as `int8` plus a float scale and turns it back into
//! floats in the graph (`Cast` → `Mul` → `MatMul`, and `Cast` → `Mul` → `Gather` for the
//! embedding tables). Run as written, every inference re-creates ~90 MB of float weights
//! (measured 52 ms for a six-word query on 2 cores); with ONNX Runtime's constant folding the
//! float copies stay resident instead (+125 MB). This pass replaces each pattern with what keeps
//! the weights in int8:
//! - `Cast(w) · scale → MatMul(x, ·)` becomes `MatMulNBits(x, w + 128, scale, 128)` (8 bits, the
//!   scale repeated per block): the same products, computed from int8 weights (12 ms a query);
//! - `Cast(table) · scale → Gather(·, ids)` becomes `Gather(table, ids) · Gather(scale, ids)`,
//!   so only the looked-up rows become floats.
//!
//! It works on the protobuf wire format and copies every field it does not touch byte for byte.
//! A pattern it does not recognise exactly is left as it is, so the result always computes what
//! the input computes.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};

/// Block size of the `MatMulNBits` weights; every scale within a column is the same, so any
/// size dividing K gives the same products (16–128 measured alike).
const BLOCK: usize = 128;

/// ONNX `TensorProto.DataType` values.
const FLOAT: u64 = 1;
const UINT8: u64 = 2;
const INT8: u64 = 3;

/// What [`rewrite`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewritten {
    pub matmuls: usize,
    pub gathers: usize,
}

/// Rewrites a serialized ONNX model. `Ok(None)` when nothing in it matches.
pub fn rewrite(model: &[u8]) -> anyhow::Result<Option<(Vec<u8>, Rewritten)>> {
    let fields = parse(model).context("reading the model")?;
    let Some(graph_field) = fields.iter().position(|f| f.number == 7) else {
        bail!("the model has no graph");
    };
    let graph_bytes = fields[graph_field].bytes().context("the model's graph")?;
    let Some((graph, rewritten)) = rewrite_graph(graph_bytes)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(model.len() + model.len() / 8);
    let mut has_ms_opset = false;
    for field in &fields {
        if field.number == 8 {
            let opset = parse(field.bytes()?)?;
            has_ms_opset |= opset
                .iter()
                .any(|f| f.number == 1 && f.bytes().ok() == Some(b"com.microsoft".as_slice()));
        }
        if field.number == 7 {
            put_bytes(&mut out, 7, &graph);
        } else {
            out.extend_from_slice(field.raw);
        }
    }
    if !has_ms_opset {
        let mut opset = Vec::new();
        put_bytes(&mut opset, 1, b"com.microsoft");
        put_varint_field(&mut opset, 2, 1);
        put_bytes(&mut out, 8, &opset);
    }
    Ok(Some((out, rewritten)))
}

fn rewrite_graph(graph: &[u8]) -> anyhow::Result<Option<(Vec<u8>, Rewritten)>> {
    let fields = parse(graph).context("reading the graph")?;
    let mut nodes = Vec::new();
    let mut initializers = HashMap::new();
    let mut graph_outputs = HashSet::new();
    for (i, field) in fields.iter().enumerate() {
        match field.number {
            1 => nodes.push(Node::parse(i, field.bytes()?)?),
            5 => {
                let tensor = Tensor::parse(field.bytes()?)?;
                initializers.insert(tensor.name.clone(), (i, tensor));
            }
            12 => {
                if let Some(name) = parse(field.bytes()?)?.iter().find(|f| f.number == 1) {
                    graph_outputs.insert(name.string()?);
                }
            }
            _ => {}
        }
    }
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (n, node) in nodes.iter().enumerate() {
        for input in &node.inputs {
            consumers.entry(input.as_str()).or_default().push(n);
        }
    }
    // The single node reading `tensor`, if it is read by exactly one node and is not an output.
    let only_consumer = |tensor: &str| -> Option<usize> {
        match consumers.get(tensor).map(Vec::as_slice) {
            Some([one]) if !graph_outputs.contains(tensor) => Some(*one),
            _ => None,
        }
    };

    let mut removed_nodes = HashSet::new();
    let mut replacements: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
    let mut new_initializers: Vec<Vec<u8>> = Vec::new();
    let mut rewritten = Rewritten::default();
    for (c, cast) in nodes.iter().enumerate() {
        if cast.op_type != "Cast" || cast.cast_to != Some(FLOAT) || cast.inputs.len() != 1 {
            continue;
        }
        let Some((_, weight)) = initializers.get(cast.inputs[0].as_str()) else {
            continue;
        };
        if weight.data_type != INT8 || weight.raw_data.is_none() {
            continue;
        }
        let Some(m) = only_consumer(&cast.outputs[0]) else {
            continue;
        };
        let mul = &nodes[m];
        if mul.op_type != "Mul" || mul.inputs.len() != 2 || mul.inputs[0] != cast.outputs[0] {
            continue;
        }
        let Some((_, scale)) = initializers.get(mul.inputs[1].as_str()) else {
            continue;
        };
        if scale.data_type != FLOAT || scale.raw_data.is_none() {
            continue;
        }
        let Some(u) = only_consumer(&mul.outputs[0]) else {
            continue;
        };
        let user = &nodes[u];
        let replacement = match user.op_type.as_str() {
            "MatMul" if user.inputs.len() == 2 && user.inputs[1] == mul.outputs[0] => {
                let Some((node, tensors)) = as_matmul_nbits(user, weight, scale) else {
                    continue;
                };
                new_initializers.extend(tensors);
                rewritten.matmuls += 1;
                vec![node]
            }
            "Gather" if user.inputs.len() == 2 && user.inputs[0] == mul.outputs[0] => {
                let Some(nodes) = as_row_gather(user, weight, scale) else {
                    continue;
                };
                rewritten.gathers += 1;
                nodes
            }
            _ => continue,
        };
        removed_nodes.extend([c, m]);
        replacements.insert(u, replacement);
    }
    if replacements.is_empty() {
        return Ok(None);
    }

    // Initializers no node reads any more (the int8 weights and scales now packed for
    // MatMulNBits) are dropped, or ONNX Runtime would keep both copies.
    let mut still_read = HashSet::new();
    for (n, node) in nodes.iter().enumerate() {
        if removed_nodes.contains(&n) || replacements.contains_key(&n) {
            continue;
        }
        still_read.extend(node.inputs.iter().map(String::as_str));
    }
    let replacement_inputs: Vec<Node> = replacements
        .values()
        .flatten()
        .map(|bytes| Node::parse(0, bytes))
        .collect::<anyhow::Result<_>>()?;
    for node in &replacement_inputs {
        still_read.extend(node.inputs.iter().map(String::as_str));
    }
    let dropped_fields: HashSet<usize> = initializers
        .iter()
        .filter(|(name, _)| !still_read.contains(name.as_str()) && !graph_outputs.contains(*name))
        .map(|(_, (field, _))| *field)
        .collect();
    // Shapes recorded for tensors that no longer exist would describe nothing.
    let gone: HashSet<&str> = removed_nodes
        .iter()
        .flat_map(|&n| nodes[n].outputs.iter().map(String::as_str))
        .collect();

    let node_at: HashMap<usize, usize> = nodes
        .iter()
        .enumerate()
        .map(|(n, node)| (node.field, n))
        .collect();
    let mut out = Vec::with_capacity(graph.len() + graph.len() / 8);
    let mut initializers_written = false;
    for (i, field) in fields.iter().enumerate() {
        match field.number {
            1 => {
                let n = node_at[&i];
                if let Some(replacement) = replacements.get(&n) {
                    for node in replacement {
                        put_bytes(&mut out, 1, node);
                    }
                } else if !removed_nodes.contains(&n) {
                    out.extend_from_slice(field.raw);
                }
            }
            5 => {
                if !initializers_written {
                    for tensor in &new_initializers {
                        put_bytes(&mut out, 5, tensor);
                    }
                    initializers_written = true;
                }
                if !dropped_fields.contains(&i) {
                    out.extend_from_slice(field.raw);
                }
            }
            13 => {
                let name = parse(field.bytes()?)?
                    .iter()
                    .find(|f| f.number == 1)
                    .map(Field::string)
                    .transpose()?;
                if !name.is_some_and(|n| gone.contains(n.as_str())) {
                    out.extend_from_slice(field.raw);
                }
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
    Ok(Some((out, rewritten)))
}

/// `MatMul(x, Cast(w) · scale)` with `w` int8 `[K, N]` and one scale per column.
fn as_matmul_nbits(
    user: &Node,
    weight: &Tensor,
    scale: &Tensor,
) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let [k, n] = weight.dims[..] else {
        return None;
    };
    let (k, n) = (usize::try_from(k).ok()?, usize::try_from(n).ok()?);
    let scales = scale.floats()?;
    let per_column = match (&scale.dims[..], scales.len()) {
        ([1, cols], len) | ([cols], len) if *cols as usize == n && len == n => true,
        ([] | [1] | [1, 1], 1) => false,
        _ => return None,
    };
    if k == 0 || n == 0 || k % BLOCK != 0 {
        return None;
    }
    let w = weight.raw_data?;
    if w.len() != k * n {
        return None;
    }
    let blocks = k / BLOCK;
    // B is column-major ([N][K]) and unsigned: w + 128 with a zero point of 128.
    let mut packed = vec![0u8; n * k];
    for (row, values) in w.chunks_exact(n).enumerate() {
        for (col, &value) in values.iter().enumerate() {
            packed[col * k + row] = value ^ 0x80; // two's complement + 128
        }
    }
    let mut block_scales = Vec::with_capacity(n * blocks * 4);
    for col in 0..n {
        let s = if per_column { scales[col] } else { scales[0] };
        for _ in 0..blocks {
            block_scales.extend_from_slice(&s.to_le_bytes());
        }
    }
    let zero_points = vec![128u8; n * blocks];
    let base = &weight.name;
    let names = [
        format!("{base}__nbits_b"),
        format!("{base}__nbits_scales"),
        format!("{base}__nbits_zero_points"),
    ];
    let tensors = vec![
        tensor_bytes(&names[0], UINT8, &[n, blocks, BLOCK], &packed),
        tensor_bytes(&names[1], FLOAT, &[n * blocks], &block_scales),
        tensor_bytes(&names[2], UINT8, &[n * blocks], &zero_points),
    ];
    let node = node_bytes(
        &format!("{}__nbits", user.name),
        "MatMulNBits",
        "com.microsoft",
        &[&user.inputs[0], &names[0], &names[1], &names[2]],
        &user.outputs,
        &[
            ("K", k as i64),
            ("N", n as i64),
            ("bits", 8),
            ("block_size", BLOCK as i64),
        ],
    );
    Some((node, tensors))
}

/// `Gather(Cast(table) · scale, ids)` with one scale per row: gathers the int8 rows and their
/// scales, then multiplies.
fn as_row_gather(user: &Node, table: &Tensor, scale: &Tensor) -> Option<Vec<Vec<u8>>> {
    let [rows, _] = table.dims[..] else {
        return None;
    };
    if scale.dims[..] != [rows, 1] || user.axis.unwrap_or(0) != 0 {
        return None;
    }
    let out = &user.outputs[0];
    let (rows_q, scales, rows_f) = (
        format!("{out}__rows_int8"),
        format!("{out}__row_scales"),
        format!("{out}__rows_float"),
    );
    let ids = user.inputs[1].as_str();
    Some(vec![
        node_bytes(
            &rows_q,
            "Gather",
            "",
            &[&table.name, ids],
            std::slice::from_ref(&rows_q),
            &[],
        ),
        node_bytes(
            &scales,
            "Gather",
            "",
            &[&scale.name, ids],
            std::slice::from_ref(&scales),
            &[],
        ),
        node_bytes(
            &rows_f,
            "Cast",
            "",
            &[&rows_q],
            std::slice::from_ref(&rows_f),
            &[("to", FLOAT as i64)],
        ),
        node_bytes(
            &format!("{out}__scaled"),
            "Mul",
            "",
            &[&rows_f, &scales],
            &user.outputs,
            &[],
        ),
    ])
}

/// The parts of a `NodeProto` this pass reads.
struct Node {
    /// Index of its field in the graph.
    field: usize,
    inputs: Vec<String>,
    outputs: Vec<String>,
    name: String,
    op_type: String,
    cast_to: Option<u64>,
    axis: Option<i64>,
}

impl Node {
    fn parse(field: usize, bytes: &[u8]) -> anyhow::Result<Node> {
        let mut node = Node {
            field,
            inputs: Vec::new(),
            outputs: Vec::new(),
            name: String::new(),
            op_type: String::new(),
            cast_to: None,
            axis: None,
        };
        let mut domain = String::new();
        for f in parse(bytes)? {
            match f.number {
                1 => node.inputs.push(f.string()?),
                2 => node.outputs.push(f.string()?),
                3 => node.name = f.string()?,
                4 => node.op_type = f.string()?,
                7 => domain = f.string()?,
                5 => {
                    let attribute = parse(f.bytes()?)?;
                    let name = attribute.iter().find(|a| a.number == 1).map(Field::string);
                    let int = attribute.iter().find(|a| a.number == 3).map(|a| a.value);
                    match (name.transpose()?.as_deref(), int) {
                        (Some("to"), Some(v)) => node.cast_to = Some(v),
                        (Some("axis"), Some(v)) => node.axis = Some(v as i64),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        // Only the standard operators are what their names say.
        if !domain.is_empty() && domain != "ai.onnx" {
            node.op_type = format!("{domain}.{}", node.op_type);
        }
        Ok(node)
    }
}

/// The parts of a `TensorProto` this pass reads.
struct Tensor<'a> {
    name: String,
    data_type: u64,
    dims: Vec<i64>,
    /// `None` when the values are elsewhere (typed fields, external data).
    raw_data: Option<&'a [u8]>,
}

impl<'a> Tensor<'a> {
    fn parse(bytes: &'a [u8]) -> anyhow::Result<Tensor<'a>> {
        let mut tensor = Tensor {
            name: String::new(),
            data_type: 0,
            dims: Vec::new(),
            raw_data: None,
        };
        let mut external = false;
        for f in parse(bytes)? {
            match (f.number, f.wire_type) {
                (1, 0) => tensor.dims.push(f.value as i64),
                (1, 2) => {
                    let mut packed = f.bytes()?;
                    while !packed.is_empty() {
                        tensor.dims.push(read_varint(&mut packed)? as i64);
                    }
                }
                (2, _) => tensor.data_type = f.value,
                (8, _) => tensor.name = f.string()?,
                (9, _) => tensor.raw_data = Some(f.bytes()?),
                (14, _) => external = f.value == 1,
                _ => {}
            }
        }
        if external {
            tensor.raw_data = None;
        }
        Ok(tensor)
    }

    fn floats(&self) -> Option<Vec<f32>> {
        let raw = self.raw_data?;
        (raw.len() % 4 == 0).then(|| {
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
    }
}

fn tensor_bytes(name: &str, data_type: u64, dims: &[usize], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + name.len() + 32);
    for &d in dims {
        put_varint_field(&mut out, 1, d as u64);
    }
    put_varint_field(&mut out, 2, data_type);
    put_bytes(&mut out, 8, name.as_bytes());
    put_bytes(&mut out, 9, raw);
    out
}

fn node_bytes(
    name: &str,
    op_type: &str,
    domain: &str,
    inputs: &[&str],
    outputs: &[String],
    int_attributes: &[(&str, i64)],
) -> Vec<u8> {
    let mut out = Vec::new();
    for input in inputs {
        put_bytes(&mut out, 1, input.as_bytes());
    }
    for output in outputs {
        put_bytes(&mut out, 2, output.as_bytes());
    }
    put_bytes(&mut out, 3, name.as_bytes());
    put_bytes(&mut out, 4, op_type.as_bytes());
    for (attribute, value) in int_attributes {
        let mut a = Vec::new();
        put_bytes(&mut a, 1, attribute.as_bytes());
        put_varint_field(&mut a, 3, *value as u64);
        put_varint_field(&mut a, 20, 2); // AttributeType INT
        put_bytes(&mut out, 5, &a);
    }
    if !domain.is_empty() {
        put_bytes(&mut out, 7, domain.as_bytes());
    }
    out
}

/// One protobuf field: its number, wire type, value (varint or fixed) or payload, and its
/// bytes as they were (tag included), for copying it unchanged.
struct Field<'a> {
    number: u64,
    wire_type: u8,
    value: u64,
    payload: &'a [u8],
    raw: &'a [u8],
}

impl<'a> Field<'a> {
    fn bytes(&self) -> anyhow::Result<&'a [u8]> {
        if self.wire_type != 2 {
            bail!("field {} is not length-delimited", self.number);
        }
        Ok(self.payload)
    }

    fn string(&self) -> anyhow::Result<String> {
        Ok(std::str::from_utf8(self.bytes()?)
            .with_context(|| format!("field {} is not UTF-8", self.number))?
            .to_string())
    }
}

fn parse(mut bytes: &[u8]) -> anyhow::Result<Vec<Field<'_>>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let tag = read_varint(&mut bytes)?;
        let (number, wire_type) = (tag >> 3, (tag & 7) as u8);
        let (value, payload) = match wire_type {
            0 => (read_varint(&mut bytes)?, &[][..]),
            1 => (
                u64::from_le_bytes(take(&mut bytes, 8)?.try_into()?),
                &[][..],
            ),
            5 => (
                u32::from_le_bytes(take(&mut bytes, 4)?.try_into()?) as u64,
                &[][..],
            ),
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)?)?;
                (0, take(&mut bytes, len)?)
            }
            other => bail!("unsupported protobuf wire type {other} in field {number}"),
        };
        let used = start.len() - bytes.len();
        fields.push(Field {
            number,
            wire_type,
            value,
            payload,
            raw: &start[..used],
        });
    }
    Ok(fields)
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> anyhow::Result<&'a [u8]> {
    if bytes.len() < len {
        bail!(
            "truncated protobuf: {len} bytes expected, {} left",
            bytes.len()
        );
    }
    let (head, tail) = bytes.split_at(len);
    *bytes = tail;
    Ok(head)
}

fn read_varint(bytes: &mut &[u8]) -> anyhow::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let [byte, rest @ ..] = *bytes else {
            bail!("truncated protobuf varint");
        };
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("protobuf varint longer than 10 bytes")
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, number: u64, value: u64) {
    put_varint(out, number << 3);
    put_varint(out, value);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph with both patterns, a Cast that feeds two nodes (must stay) and one unrelated node.
    fn tiny_model() -> Vec<u8> {
        let w: Vec<u8> = (0..BLOCK * 2)
            .map(|i| (i as i8).wrapping_sub(7) as u8)
            .collect();
        let scale: Vec<u8> = [0.5f32, 0.25]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let table: Vec<u8> = (0..6u8).collect();
        let row_scales: Vec<u8> = [1.0f32, 2.0, 3.0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut graph = Vec::new();
        let nodes = [
            node_bytes("c1", "Cast", "", &["w"], &["wf".into()], &[("to", 1)]),
            node_bytes("m1", "Mul", "", &["wf", "w_scale"], &["wd".into()], &[]),
            node_bytes("mm", "MatMul", "", &["x", "wd"], &["y".into()], &[]),
            node_bytes("c2", "Cast", "", &["t"], &["tf".into()], &[("to", 1)]),
            node_bytes("m2", "Mul", "", &["tf", "t_scale"], &["td".into()], &[]),
            node_bytes("g", "Gather", "", &["td", "ids"], &["e".into()], &[]),
            node_bytes("r", "Relu", "", &["y"], &["z".into()], &[]),
        ];
        for n in &nodes {
            put_bytes(&mut graph, 1, n);
        }
        put_bytes(&mut graph, 2, b"g");
        for t in [
            tensor_bytes("w", INT8, &[BLOCK, 2], &w),
            tensor_bytes("w_scale", FLOAT, &[1, 2], &scale),
            tensor_bytes("t", INT8, &[3, 2], &table),
            tensor_bytes("t_scale", FLOAT, &[3, 1], &row_scales),
        ] {
            put_bytes(&mut graph, 5, &t);
        }
        let mut output = Vec::new();
        put_bytes(&mut output, 1, b"z");
        put_bytes(&mut graph, 12, &output);
        let mut model = Vec::new();
        put_varint_field(&mut model, 1, 8);
        put_bytes(&mut model, 7, &graph);
        model
    }

    fn graph_of(model: &[u8]) -> (Vec<Node>, Vec<Tensor<'_>>) {
        let fields = parse(model).unwrap();
        let graph = fields
            .iter()
            .find(|f| f.number == 7)
            .unwrap()
            .bytes()
            .unwrap();
        let mut nodes = Vec::new();
        let mut tensors = Vec::new();
        for (i, f) in parse(graph).unwrap().iter().enumerate() {
            match f.number {
                1 => nodes.push(Node::parse(i, f.bytes().unwrap()).unwrap()),
                5 => tensors.push(Tensor::parse(f.bytes().unwrap()).unwrap()),
                _ => {}
            }
        }
        (nodes, tensors)
    }

    #[test]
    fn rewrites_both_patterns_and_keeps_the_rest() {
        let (model, counts) = rewrite(&tiny_model()).unwrap().unwrap();
        assert_eq!(
            counts,
            Rewritten {
                matmuls: 1,
                gathers: 1
            }
        );
        let (nodes, tensors) = graph_of(&model);
        let ops: Vec<&str> = nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "com.microsoft.MatMulNBits",
                "Gather",
                "Gather",
                "Cast",
                "Mul",
                "Relu"
            ]
        );
        assert_eq!(nodes[0].inputs[0], "x");
        assert_eq!(nodes[0].outputs, ["y"]);
        assert_eq!(nodes[4].outputs, ["e"]);
        let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        // The matmul weight and its scale are repacked; the table is still gathered from.
        assert!(
            !names.contains(&"w") && !names.contains(&"w_scale"),
            "{names:?}"
        );
        assert!(
            names.contains(&"t") && names.contains(&"t_scale"),
            "{names:?}"
        );
        let b = tensors.iter().find(|t| t.name == "w__nbits_b").unwrap();
        assert_eq!(b.dims, [2, 1, BLOCK as i64]);
        let b = b.raw_data.unwrap();
        // Column 1, row 3 of w is w[3 * 2 + 1] = 7 - 7 = 0, so 128 unsigned.
        assert_eq!(b[BLOCK + 3], 128);
        assert_eq!(b[0], ((0i8.wrapping_sub(7)) as i16 + 128) as u8);
        let scales = tensors
            .iter()
            .find(|t| t.name == "w__nbits_scales")
            .unwrap();
        assert_eq!(scales.floats().unwrap(), [0.5, 0.25]);
        // The Microsoft operator set is declared once.
        let opsets = parse(&model)
            .unwrap()
            .iter()
            .filter(|f| f.number == 8)
            .count();
        assert_eq!(opsets, 1);
    }

    #[test]
    fn leaves_a_shared_or_unknown_pattern_alone() {
        let mut graph = Vec::new();
        for n in [
            node_bytes("c1", "Cast", "", &["w"], &["wf".into()], &[("to", 1)]),
            node_bytes("m1", "Mul", "", &["wf", "s"], &["wd".into()], &[]),
            node_bytes("mm", "MatMul", "", &["x", "wd"], &["y".into()], &[]),
            node_bytes("other", "Relu", "", &["wd"], &["z".into()], &[]),
        ] {
            put_bytes(&mut graph, 1, &n);
        }
        let w = vec![1u8; BLOCK * 2];
        put_bytes(&mut graph, 5, &tensor_bytes("w", INT8, &[BLOCK, 2], &w));
        let s: Vec<u8> = [1.0f32, 1.0].iter().flat_map(|s| s.to_le_bytes()).collect();
        put_bytes(&mut graph, 5, &tensor_bytes("s", FLOAT, &[1, 2], &s));
        let mut model = Vec::new();
        put_bytes(&mut model, 7, &graph);
        assert!(rewrite(&model).unwrap().is_none());
    }

    #[test]
    fn reports_a_damaged_model() {
        let mut model = tiny_model();
        model.truncate(model.len() / 2);
        assert!(rewrite(&model).is_err());
        assert!(rewrite(b"").unwrap_err().to_string().contains("no graph"));
    }
}
