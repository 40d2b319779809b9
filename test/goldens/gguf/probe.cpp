// Runs a GGUF model in llama.cpp and prints JSON: the prompt's token ids (llama.cpp's tokenizer, or given ids),
// the logits at every prompt position, and a greedy continuation with the logits of each step.
// usage: probe MODEL (text:PROMPT | ids:1,2,3) N_PREDICT
#include "llama.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static void print_row(const float * l, int n) {
    printf("[");
    for (int j = 0; j < n; j++) printf(j ? ",%.9g" : "%.9g", l[j]);
    printf("]");
}

int main(int argc, char ** argv) {
    if (argc < 4) { fprintf(stderr, "usage: probe MODEL text:PROMPT|ids:1,2 N\n"); return 1; }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 2; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    std::string arg = argv[2];
    if (arg == "tokenize") {
        // argv[3]: a file of texts separated by NUL bytes; prints one JSON array of id arrays
        FILE * f = fopen(argv[3], "rb");
        std::string all;
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, got);
        fclose(f);
        printf("[");
        size_t start = 0, k = 0;
        while (start <= all.size()) {
            size_t end = all.find('\0', start);
            if (end == std::string::npos) end = all.size();
            std::string text = all.substr(start, end - start);
            int n = -llama_tokenize(vocab, text.c_str(), text.size(), nullptr, 0, true, true);
            std::vector<llama_token> t(n > 0 ? n : 0);
            if (n > 0) llama_tokenize(vocab, text.c_str(), text.size(), t.data(), n, true, true);
            printf(k++ ? ",[" : "[");
            for (size_t i = 0; i < t.size(); i++) printf(i ? ",%d" : "%d", t[i]);
            printf("]");
            start = end + 1;
            if (end == all.size()) break;
        }
        printf("]\n");
        return 0;
    }
    std::vector<llama_token> ids;
    if (arg.rfind("text:", 0) == 0) {
        std::string text = arg.substr(5);
        int n = -llama_tokenize(vocab, text.c_str(), text.size(), nullptr, 0, true, true);
        ids.resize(n);
        llama_tokenize(vocab, text.c_str(), text.size(), ids.data(), n, true, true);
    } else {
        const char * p = arg.c_str() + 4;
        while (*p) { ids.push_back(strtol(p, (char **) &p, 10)); if (*p == ',') p++; }
    }
    const int n_predict = atoi(argv[3]);
    auto cp = llama_context_default_params();
    cp.n_ctx = ids.size() + n_predict + 8;
    cp.n_batch = cp.n_ctx;
    cp.n_threads = 1;
    cp.n_threads_batch = 1;
    if (getenv("PROBE_F16_KV") == nullptr) { cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32; }
    llama_context * ctx = llama_init_from_model(model, cp);
    llama_batch batch = llama_batch_init(ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) {
        batch.token[i] = ids[i]; batch.pos[i] = i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = 0; batch.logits[i] = 1;
    }
    batch.n_tokens = ids.size();
    if (llama_decode(ctx, batch)) { fprintf(stderr, "decode failed\n"); return 3; }
    printf("{\"n_vocab\":%d,\"ids\":[", n_vocab);
    for (size_t i = 0; i < ids.size(); i++) printf(i ? ",%d" : "%d", ids[i]);
    printf("],\"logits\":[");
    for (size_t i = 0; i < ids.size(); i++) { if (i) printf(","); print_row(llama_get_logits_ith(ctx, i), n_vocab); }
    printf("],\"greedy\":[");
    std::vector<std::vector<float>> steps;
    const float * last = llama_get_logits_ith(ctx, ids.size() - 1);
    int pos = ids.size();
    for (int s = 0; s < n_predict; s++) {
        int best = 0;
        for (int j = 1; j < n_vocab; j++) if (last[j] > last[best]) best = j;
        printf(s ? ",%d" : "%d", best);
        llama_batch one = llama_batch_get_one(&best, 1);
        std::vector<llama_pos> p1 = {pos};
        (void) p1;
        if (llama_decode(ctx, one)) { fprintf(stderr, "decode failed\n"); return 3; }
        pos++;
        last = llama_get_logits_ith(ctx, -1);
        steps.emplace_back(last, last + n_vocab);
    }
    printf("],\"greedy_logits\":[");
    for (size_t s = 0; s < steps.size(); s++) { if (s) printf(","); print_row(steps[s].data(), n_vocab); }
    printf("]}\n");
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
