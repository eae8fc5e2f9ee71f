// The registries of the device halves (device_op.h), one per build (GPU / emulation).
#include "cuda/device_op.h"

PYCNN_DEVICE_NAMESPACE_BEGIN

bool register_device_op(const DeviceOpDef* def) { return Registry<DeviceOpDef, &DeviceOpDef::kind>::add(def, "device op"); }
const DeviceOpDef* find_device_op(const std::string& kind) {
  return Registry<DeviceOpDef, &DeviceOpDef::kind>::find(kind);
}
std::vector<const DeviceOpDef*> registered_device_ops() { return Registry<DeviceOpDef, &DeviceOpDef::kind>::all(); }

bool register_device_loss(const DeviceLossDef* def) {
  return Registry<DeviceLossDef, &DeviceLossDef::name>::add(def, "device loss");
}
const DeviceLossDef* find_device_loss(const std::string& name) {
  return Registry<DeviceLossDef, &DeviceLossDef::name>::find(name);
}
bool register_device_update(const DeviceUpdateDef* def) {
  return Registry<DeviceUpdateDef, &DeviceUpdateDef::name>::add(def, "device update");
}
const DeviceUpdateDef* find_device_update(const std::string& name) {
  return Registry<DeviceUpdateDef, &DeviceUpdateDef::name>::find(name);
}

PYCNN_DEVICE_NAMESPACE_END
