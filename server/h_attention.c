/* h_attention.c - POST /v1/attention and /v1/multihead_attention: parse, validate, compute, render. */
#include "srv.h"

void srv_h_attention(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    (void)app;
    (void)req;
    srv_err_set(&e, 500, SRV_CODE_INTERNAL, "", "attention handler is being written");
    srv_respond_error(res, &e);
}

void srv_h_mha(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_h_attention(app, req, res);
}
