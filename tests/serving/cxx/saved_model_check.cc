// saved_model_check: loads a SavedModel with TensorFlow's C++ SavedModel loader
// (tensorflow::LoadSavedModel, the loader TF Serving's SavedModelBundle source
// uses), feeds a batch of serialized tf.Examples to a signature's string input
// and prints every output of the signature as one JSON object:
//
//   {"click": [0.12, ...], "score": [...]}
//
// Each output is flattened in row-major order (numbers as doubles, strings as
// JSON strings, e.g. the classes of a classification signature); the dtypes and
// shapes go to stderr.
//
// Usage: saved_model_check EXPORT_DIR EXAMPLES_FILE [SIGNATURE [TAG]]
//   EXAMPLES_FILE  one base64-encoded serialized tf.Example per line
//                  (standard alphabet, padding optional; blank lines skipped)
//   SIGNATURE      default serving_default
//   TAG            default serve
//
// Exit status: 0 on success, 1 on a load or run error, 2 on bad usage or input.
//
// Built by tests/serving/test_cxx_loader.py against the headers and libraries of
// the tensorflow wheel (tensorflow/include, libtensorflow_framework.so.2,
// libtensorflow_cc.so.2).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/protobuf/meta_graph.pb.h"
#include "tensorflow/core/public/session.h"
#include "tensorflow/core/public/session_options.h"

namespace {

// Decodes standard base64 (RFC 4648), padding optional. Returns false on any
// character outside the alphabet.
bool DecodeBase64(const std::string& text, std::string* out) {
  static const auto* table = [] {
    auto* t = new int[256];
    for (int i = 0; i < 256; ++i) t[i] = -1;
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
    return t;
  }();
  out->clear();
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const int value = table[static_cast<unsigned char>(c)];
    if (value < 0) return false;
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return true;
}

std::string Trim(const std::string& s) {
  const char* space = " \t\r\n";
  const auto begin = s.find_first_not_of(space);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

bool ReadExamples(const std::string& path, std::vector<std::string>* examples) {
  std::ifstream file(path);
  if (!file) {
    std::cerr << "cannot read " << path << "\n";
    return false;
  }
  std::string line;
  int number = 0;
  while (std::getline(file, line)) {
    ++number;
    line = Trim(line);
    if (line.empty()) continue;
    std::string decoded;
    if (!DecodeBase64(line, &decoded)) {
      std::cerr << path << ":" << number << ": not base64\n";
      return false;
    }
    examples->push_back(std::move(decoded));
  }
  return true;
}

// A JSON string; bytes outside printable ASCII as \u00XX (each byte one code
// point, so any bytes round-trip as latin-1).
std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x80) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned char>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// A number as JSON; NaN and infinities as Python's json module writes them.
std::string JsonNumber(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char text[32];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

template <typename T>
void AppendValues(const tensorflow::Tensor& tensor, std::vector<double>* values) {
  const auto flat = tensor.flat<T>();
  for (int64_t i = 0; i < flat.size(); ++i) values->push_back(static_cast<double>(flat(i)));
}

// The tensor's values as doubles; false for a dtype that is not numeric.
bool NumericValues(const tensorflow::Tensor& tensor, std::vector<double>* values) {
  switch (tensor.dtype()) {
    case tensorflow::DT_FLOAT:
      AppendValues<float>(tensor, values);
      return true;
    case tensorflow::DT_DOUBLE:
      AppendValues<double>(tensor, values);
      return true;
    case tensorflow::DT_INT32:
      AppendValues<int32_t>(tensor, values);
      return true;
    case tensorflow::DT_INT64:
      AppendValues<int64_t>(tensor, values);
      return true;
    case tensorflow::DT_BOOL:
      AppendValues<bool>(tensor, values);
      return true;
    default:
      return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 5) {
    std::cerr << "usage: " << argv[0] << " EXPORT_DIR EXAMPLES_FILE [SIGNATURE [TAG]]\n";
    return 2;
  }
  const std::string export_dir = argv[1];
  const std::string signature_name = argc > 3 ? argv[3] : "serving_default";
  const std::string tag = argc > 4 ? argv[4] : "serve";

  std::vector<std::string> examples;
  if (!ReadExamples(argv[2], &examples)) return 2;
  if (examples.empty()) {
    std::cerr << argv[2] << " holds no examples\n";
    return 2;
  }

  tensorflow::SavedModelBundle bundle;
  const tensorflow::Status loaded = tensorflow::LoadSavedModel(
    tensorflow::SessionOptions(), tensorflow::RunOptions(), export_dir, {tag}, &bundle);
  if (!loaded.ok()) {
    std::cerr << "LoadSavedModel(" << export_dir << ", " << tag << "): " << loaded << "\n";
    return 1;
  }

  const auto& signatures = bundle.meta_graph_def.signature_def();
  const auto found = signatures.find(signature_name);
  if (found == signatures.end()) {
    std::cerr << "no SignatureDef " << signature_name << "; the model has:";
    for (const auto& entry : signatures) std::cerr << " " << entry.first;
    std::cerr << "\n";
    return 1;
  }
  const tensorflow::SignatureDef& signature = found->second;
  if (signature.inputs_size() != 1) {
    std::cerr << signature_name << " has " << signature.inputs_size()
              << " inputs; expected one string input of serialized tf.Examples\n";
    return 1;
  }
  const auto& input = *signature.inputs().begin();
  if (input.second.dtype() != tensorflow::DT_STRING) {
    std::cerr << signature_name << " input " << input.first << " is "
              << tensorflow::DataTypeString(input.second.dtype()) << ", not a string\n";
    return 1;
  }

  tensorflow::Tensor batch(tensorflow::DT_STRING,
                           tensorflow::TensorShape({static_cast<int64_t>(examples.size())}));
  auto rows = batch.flat<tensorflow::tstring>();
  for (size_t i = 0; i < examples.size(); ++i) rows(i) = examples[i];

  // Output keys in the SignatureDef's (sorted) map order.
  std::vector<std::string> keys;
  std::vector<std::string> tensor_names;
  for (const auto& output : signature.outputs()) keys.push_back(output.first);
  std::sort(keys.begin(), keys.end());
  for (const auto& key : keys) tensor_names.push_back(signature.outputs().at(key).name());

  std::vector<tensorflow::Tensor> outputs;
  const tensorflow::Status ran =
    bundle.session->Run({{input.second.name(), batch}}, tensor_names, {}, &outputs);
  if (!ran.ok()) {
    std::cerr << "Session::Run(" << signature_name << "): " << ran << "\n";
    return 1;
  }

  std::string json = "{";
  for (size_t i = 0; i < keys.size(); ++i) {
    std::cerr << keys[i] << ": " << tensorflow::DataTypeString(outputs[i].dtype()) << " "
              << outputs[i].shape().DebugString() << "\n";
    if (i > 0) json += ", ";
    json += JsonString(keys[i]) + ": [";
    std::vector<std::string> items;
    if (outputs[i].dtype() == tensorflow::DT_STRING) {
      const auto flat = outputs[i].flat<tensorflow::tstring>();
      for (int64_t j = 0; j < flat.size(); ++j) items.push_back(JsonString(std::string(flat(j))));
    } else {
      std::vector<double> values;
      if (!NumericValues(outputs[i], &values)) {
        std::cerr << "output " << keys[i] << " is "
                  << tensorflow::DataTypeString(outputs[i].dtype())
                  << ", neither numeric nor a string\n";
        return 1;
      }
      for (double value : values) items.push_back(JsonNumber(value));
    }
    for (size_t j = 0; j < items.size(); ++j) {
      if (j > 0) json += ", ";
      json += items[j];
    }
    json += "]";
  }
  json += "}";
  std::cout << json << std::endl;
  const tensorflow::Status closed = bundle.session->Close();
  if (!closed.ok()) {
    std::cerr << "Session::Close: " << closed << "\n";
    return 1;
  }
  return 0;
}
